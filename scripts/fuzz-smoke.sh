#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each briefly from its seed corpus. A crash fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${FUZZ_SECONDS:-20}
cmake --preset fuzz >/dev/null
shopt -s nullglob
# Only the fuzz targets (and the layers they link), not the CLI.
names=()
for src in fuzz/*_fuzz.cpp; do names+=("$(basename "$src" .cpp)"); done
cmake --build --preset fuzz -j"$(nproc)" --target "${names[@]}"
targets=(build/fuzz/*_fuzz)
if ((${#targets[@]} == 0)); then echo "fuzz-smoke: no fuzz targets built"; exit 1; fi
for t in "${targets[@]}"; do
  name=$(basename "$t")
  corpus=$(mktemp -d)
  [ -d "fuzz/corpus/${name%_fuzz}" ] && cp -r "fuzz/corpus/${name%_fuzz}/." "$corpus/"
  echo "fuzz-smoke: $name for ${SECONDS_PER_TARGET}s"
  "$t" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -print_final_stats=0 "$corpus" 2>"$corpus.log" \
    || { tail -40 "$corpus.log"; echo "fuzz-smoke: $name FAILED"; exit 1; }
  grep -E "^#[0-9]+.*DONE" "$corpus.log" | tail -1 || true
  rm -rf "$corpus" "$corpus.log"
done
echo "fuzz-smoke: ${#targets[@]} targets ran clean"
