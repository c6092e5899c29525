#!/usr/bin/env bash
# lowbit on a CPU it shares (issue 30): perplexity, decoding and GPTQ with -t 1 and -t 2, alone and beside one
# busy single-threaded process (sh -c 'while :; do :; done', as a neighbour's job would be), for one or more
# lowbit binaries side by side (e.g. today's build against an older one). Prints the median of the rounds of
# each measure and the ratios: -t 2 / -t 1 (the goal: >= 1 beside a busy process) and each binary / the first.
#
#   bench/shared_cpu.sh [--rounds 3] [--only ppl,decode,gptq] [--log FILE] [BIN...]   (default build/release/lowbit)
#   bench/shared_cpu.sh --table LOG                                                  (the table of an earlier log)
#
# Measures (whole processes, their own reported speed where they print one):
#   ppl     lowbit ppl testbed-25m -d wikitext2 --max-windows 6            tok/s of the evaluation
#   decode  lowbit generate on the LLaMA-3.2-1B shape, RTN w4 g128, 64 tok   tok/s of the generated tokens
#   gptq    lowbit quantize testbed-25m --method gptq --wbits 4, 16 x 2048   1 / wall seconds of the process
# The 1B checkpoints are random weights made once by `lowbit synth` and `lowbit quantize` in $LOWBIT_SYNTH_1B
# (default /tmp/lowbit-synth-l1b, with LLaMA-3's tokenizer from the models dir) and its -w4g128 sibling. Runs of one round are interleaved: for each
# condition and thread count, every binary in turn.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
rounds=3 only=ppl,decode,gptq log="" table_only=0
bins=()
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --table) log=$2; table_only=1; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) bins+=("$1"); shift ;;
  esac
done
((${#bins[@]})) || bins=("$here/build/release/lowbit")

if ((table_only == 0)); then
for b in "${bins[@]}"; do [[ -x $b ]] || { echo "not an executable: $b" >&2; exit 2; }; done
work=$(mktemp -d /tmp/shared_cpu.XXXXXX)
busy_pid=""
cleanup() { [[ -n $busy_pid ]] && kill "$busy_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
[[ -n $log ]] || log=/tmp/shared_cpu-$(date +%Y%m%d-%H%M%S).tsv
: >"$log"

synth=${LOWBIT_SYNTH_1B:-/tmp/lowbit-synth-l1b}
if [[ $only == *decode* && ! -f ${synth}-w4g128/config.json ]]; then
  [[ -f $synth/config.json ]] || "${bins[0]}" synth --shape llama3.2-1b --dtype bf16 --out "$synth" >&2
  # generate needs a tokenizer: LLaMA-3's (its vocabulary is the shape's) from the models dir.
  tok=${LOWBIT_MODELS:-$here/../shared/models}/tokenizers/llama3
  [[ -f $synth/tokenizer.json ]] || cp "$tok/tokenizer.json" "$tok/tokenizer_config.json" "$synth/"
  "${bins[0]}" quantize "$synth" --method rtn --wbits 4 --group 128 --out "${synth}-w4g128" >&2
fi

# One run: prints its speed (higher is better).
measure() {
  local what=$1 bin=$2 t=$3 out t0 t1
  case $what in
    ppl)
      out=$("$bin" -t "$t" ppl testbed-25m -d wikitext2 --max-windows 6 2>&1) || { echo "$out" >&2; exit 1; }
      grep -oE '[0-9.]+ tok/s, peak' <<<"$out" | tail -1 | cut -d' ' -f1 ;;
    decode)
      out=$("$bin" -t "$t" generate "${synth}-w4g128" -p "" -n 64 2>&1) || { echo "$out" >&2; exit 1; }
      grep -oE 'generated [0-9]+ tok in [0-9.]+s \([0-9.]+ tok/s' <<<"$out" | grep -oE '[0-9.]+ tok/s' |
        cut -d' ' -f1 ;;
    gptq)
      t0=$(date +%s.%N)
      out=$("$bin" -t "$t" quantize testbed-25m --method gptq --wbits 4 --calib calib/testbed-calib.txt \
        --nsamples 16 --seqlen 2048 --out "$work/gptq" 2>&1) || { echo "$out" >&2; exit 1; }
      t1=$(date +%s.%N)
      rm -rf "$work/gptq"
      awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.5f\n", 1 / (b - a) }' ;;
  esac
}

echo "$(nproc) cores, $rounds rounds, binaries: ${bins[*]}; uptime: $(uptime)" >&2
for ((r = 1; r <= rounds; ++r)); do
  for cond in alone busy; do
    if [[ $cond == busy ]]; then
      sh -c 'while :; do :; done' &
      busy_pid=$!
    fi
    for what in ${only//,/ }; do
      for t in 1 2; do
        for i in "${!bins[@]}"; do
          v=$(measure "$what" "${bins[$i]}" "$t")
          printf '%s\t%s\t%s\t%s\t%s\n' "$what" "$i" "$cond" "$t" "$v" >>"$log"
          printf '  round %d %-6s %-5s -t %d  bin %d  %s\n' "$r" "$what" "$cond" "$t" "$i" "$v" >&2
        done
      done
    done
    if [[ -n $busy_pid ]]; then kill "$busy_pid"; wait "$busy_pid" 2>/dev/null || true; busy_pid=""; fi
  done
done
echo "log: $log" >&2
fi

/usr/bin/python3 - "$log" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
med = {}
for what, b, cond, t, v in rows:
    med.setdefault((what, b, cond, t), []).append(float(v))
med = {k: statistics.median(v) for k, v in med.items()}
unit = {"ppl": "tok/s", "decode": "tok/s", "gptq": "1/s"}
whats = list(dict.fromkeys(r[0] for r in rows))
bins = sorted({r[1] for r in rows}, key=int)
print(f"| measure | binary | alone -t 1 | alone -t 2 | busy -t 1 | busy -t 2 | alone t2/t1 | busy t2/t1 |"
      + "".join(" vs bin 0 (alone t2, busy t2) |" for _ in bins[1:2]))
print("|---|---|--:|--:|--:|--:|--:|--:|" + ("--:|" if len(bins) > 1 else ""))
for w in whats:
    for b in bins:
        g = lambda c, t: med.get((w, b, c, t), float("nan"))
        cells = [g("alone", "1"), g("alone", "2"), g("busy", "1"), g("busy", "2")]
        fmt = (lambda x: f"{x:.4f}") if w == "gptq" else (lambda x: f"{x:.1f}")
        line = f"| {w} ({unit.get(w, '')}) | {b} | " + " | ".join(fmt(x) for x in cells)
        line += f" | {cells[1] / cells[0]:.2f} | {cells[3] / cells[2]:.2f} |"
        if len(bins) > 1:
            if b == "0":
                line += " |"
            else:
                a0 = med.get((w, "0", "alone", "2")); b0 = med.get((w, "0", "busy", "2"))
                line += f" {cells[1] / a0:.2f}, {cells[3] / b0:.2f} |"
        print(line)
EOF
