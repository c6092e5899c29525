#!/bin/sh
# Compares lowbit's task requests with the independent Python reference tools/ref_tasks.py: the first N examples
# of each task (N per MMLU subject; default 5, 0 = all). Run from the repository root after building the release
# preset:  tools/check_ref_tasks.sh [N]
set -e
n=${1:-5}
out=$(mktemp /tmp/lowbit-requests.XXXXXX)
LOWBIT_EVAL_DUMP="$out" LOWBIT_EVAL_DUMP_LIMIT="$n" ./build/release/lowbit_tests \
  --gtest_filter=EvalRequests.DumpForPythonReference >/dev/null
if [ "$n" = 0 ]; then n=1000000000; fi
python3 tools/ref_tasks.py --n "$n" --compare "$out"
rm -f "$out"
