#!/bin/sh
# QuIP reference checks (tools/ref_quip.py), run from the repository root, everything under nice:
#   tools/check_ref_quip.sh layers [DUMPDIR]   per-linear comparison of a lowbit dump (exit 1 if any code differs);
#                                              without DUMPDIR, a synthetic dump (the script's self-check)
#   tools/check_ref_quip.sh model [BITS=2] [SEEDS="0 1 2"] [WINDOWS=8] [NSAMPLES=16]
#                                              whole-model reference perplexity on wikitext2, one run per seed,
#                                              on the testbed calibration windows dumped by quant_eval
set -e
py="nice -n 19 /usr/bin/python3"
shared=${LOWBIT_SHARED:-../shared}
mode=${1:-layers}
if [ "$mode" = layers ]; then
  if [ -n "$2" ]; then
    $py tools/ref_quip.py layers "$2" --strict
  else
    d=$(mktemp -d /tmp/lowbit-quip-synth.XXXXXX)
    $py tools/ref_quip.py layers --make-synthetic "$d/dump" --strict
    rm -rf "$d"
  fi
  exit 0
fi
bits=${2:-2}
seeds=${3:-0 1 2}
win=${4:-8}
ns=${5:-16}
m=$shared/models/testbed-25m
tok=$(mktemp -d /tmp/lowbit-quip.XXXXXX)
[ -x build/release/quant_eval ] || nice -n 19 sh tools/build_quant_eval.sh >/dev/null
nice -n 19 build/release/quant_eval "$m" --dump-tokens "$tok" --calib "$shared/data/calib/testbed-calib.txt" \
  --nsamples "$ns" --seqlen 2048 --eval wikitext2 >/dev/null
for s in $seeds; do
  $py tools/ref_quip.py model --model "$m" --tokens "$tok" --wbits "$bits" --seed "$s" --eval wikitext2 \
    --max-windows "$win" 2>/dev/null | grep ' ppl '
done
rm -rf "$tok"
