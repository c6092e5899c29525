#!/usr/bin/env bash
# .clang-format is enforced: fails listing the files that clang-format would change.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files 'src/*.cpp' 'src/*.h' 'tests/*.cpp' 'tests/*.h' 'bench/*.cpp' 'bench/*.h' 'fuzz/*.cpp' 'tools/*.cpp')
if ! clang-format --dry-run --Werror $files 2>/tmp/lowbit-format.log; then
  grep -o '^[^:]*' /tmp/lowbit-format.log | sort -u | sed 's/^/format-check: needs clang-format: /'
  exit 1
fi
echo "format-check: $(echo "$files" | wc -w) files clean"
