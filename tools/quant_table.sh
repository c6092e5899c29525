#!/usr/bin/env bash
# Issue 3's acceptance table on testbed-25m: RTN and GPTQ at w8/w4/w3/w2 per-channel and g128, GPTQ w4g128 with
# act-order, AWQ w4g128/w3g128 — quantize with 128 x 2048 calibration windows, then perplexity on wikitext2, ptb
# and c4-sample. Resumable: a config whose result JSON exists is skipped. Results: $OUT/<config>.json.
# Usage: tools/quant_table.sh [OUT=/tmp/quant-table] (run from the repository root after scripts/setup.sh)
set -euo pipefail
OUT=${1:-/tmp/quant-table}
LOWBIT=${LOWBIT:-build/release/lowbit}
MODEL=${MODEL:-testbed-25m}
CALIB=${CALIB:-calib/testbed-calib.txt}
mkdir -p "$OUT"
configs=(
  "rtn 8 -1" "rtn 4 -1" "rtn 4 128" "rtn 3 128" "rtn 3 -1" "rtn 2 128"
  "gptq 8 -1" "gptq 4 -1" "gptq 4 128" "gptq 3 128" "gptq 3 -1" "gptq 2 128" "gptq 4 128 --act-order"
  "awq 4 128" "awq 3 128"
)
if [ ! -f "$OUT/fp.json" ]; then
  "$LOWBIT" ppl "$MODEL" -d wikitext2,ptb,c4-sample --json > "$OUT/fp.json.tmp"
  mv "$OUT/fp.json.tmp" "$OUT/fp.json"
fi
for c in "${configs[@]}"; do
  read -r method bits group extra <<<"$c"
  name="${method}-w${bits}g${group}${extra:+-actorder}"
  [ -f "$OUT/$name.json" ] && { echo "skip $name (done)"; continue; }
  calib=(); [ "$method" = rtn ] || calib=(--calib "$CALIB" --nsamples 128 --seqlen 2048 --seed 0)
  "$LOWBIT" quantize "$MODEL" --method "$method" --wbits "$bits" --group "$group" $extra "${calib[@]}" \
    --out "$OUT/$name.model" --json > "$OUT/$name.quant.json"
  "$LOWBIT" ppl "$OUT/$name.model" -d wikitext2,ptb,c4-sample --kld-base "$MODEL" --json > "$OUT/$name.json.tmp"
  mv "$OUT/$name.json.tmp" "$OUT/$name.json"
  rm -rf "$OUT/$name.model"
  echo "done $name"
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, sys, glob, os
out = sys.argv[1]
print(f"{'config':<24} {'wikitext2':>10} {'ptb':>10} {'c4-sample':>10} {'KLD(wiki)':>10}")
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    if f.endswith(".quant.json"): continue
    rows = {r["dataset"]: r for r in json.load(open(f))}
    k = rows.get("wikitext2", {}).get("kld", {}).get("mean", float("nan"))
    print(f"{os.path.basename(f)[:-5]:<24} " + " ".join(f"{rows[d]['ppl']:>10.3f}" if d in rows else f"{'-':>10}" for d in ("wikitext2", "ptb", "c4-sample")) + f" {k:>10.5f}")
PY
