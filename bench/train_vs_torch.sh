#!/usr/bin/env bash
# lowbit's fine-tuning step (build/release/train_bench) against the same fine-tune in PyTorch eager on CPU
# (tools/bench_train_torch.py), side by side: training tokens/s and peak RSS, on the same settings, the two
# runs of each setting interleaved (their order alternating from round to round), the median of the rounds.
# The goal (the training-benchmark issue): lowbit at least 2x PyTorch's tokens/s at lower peak memory.
#
#   bench/train_vs_torch.sh [--rounds 3] [--threads 2] [--steps 3] [--rank 64] [--no-recompute]
#                           [--wait passive|default] [--wait-lowbit W] [--wait-torch W] [--build build/release]
#                           [--log FILE] [SETTING...]
#   bench/train_vs_torch.sh --table LOG [--threads 2] [--wait ...]   # the table of an earlier run's log
#
# SETTING = MODEL:METHOD:BATCH:MICRO_BATCH:SEQ_LEN, METHOD qlora or lora; MODEL a directory, a name under the
# models dir, or "1b": the LLaMA-3.2-1B shape, random bf16 weights made once by `lowbit synth` (in
# $LOWBIT_SYNTH_1B, default /tmp/lowbit-synth-l1b). Default settings: testbed-25m qlora and lora at 16 x 512
# (micro-batch 4), the 1B shape qlora and lora at 1 x 256.
#
# Both sides train on the same token ids: `batch` windows of SEQ_LEN tokens from the start of the calibration
# text, tokenized once by testbed-25m's tokenizer (train_bench --dump-only), ids < 32000 and so valid for the
# 1B shape's vocabulary too. --wait passive (the default) runs both sides with OMP_WAIT_POLICY=PASSIVE: on a
# machine whose cores other processes also use, spinning OpenMP workers can cost either side several times over;
# --wait default leaves the variable unset for both; --wait-lowbit / --wait-torch set one side's (measured on 2
# shared cores: unset was lowbit's faster setting and PASSIVE torch's, see docs/train-bench.md). Each run's
# 1-minute load average before and after it is logged with it.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
rounds=3 threads=2 steps=3 rank=64 recompute=1 wait=passive wait_l="" wait_t="" build=$here/build/release log="" table_only=0
settings=()
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --rank) rank=$2; shift 2 ;;
    --no-recompute) recompute=0; shift ;;
    --wait) wait=$2; shift 2 ;;
    --wait-lowbit) wait_l=$2; shift 2 ;;
    --wait-torch) wait_t=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --table) log=$2; table_only=1; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) settings+=("$1"); shift ;;
  esac
done
((${#settings[@]})) || settings=(testbed-25m:qlora:16:4:512 testbed-25m:lora:16:4:512 1b:qlora:1:1:256 1b:lora:1:1:256)
wait_l=${wait_l:-$wait} wait_t=${wait_t:-$wait}
for w in "$wait_l" "$wait_t"; do
  [[ $w == passive || $w == default ]] || { echo "--wait passive|default" >&2; exit 2; }
done
pyexe=/usr/bin/python3  # Debian's python3-torch + numpy
if ((table_only == 0)); then
bench=$build/train_bench
lowbit=$build/lowbit
[[ -x $bench && -x $lowbit ]] || { echo "build first: cmake --build $build --target lowbit train_bench" >&2; exit 2; }
work=$(mktemp -d /tmp/train_vs_torch.XXXXXX)
trap 'rm -rf "$work"' EXIT
[[ -n $log ]] || log=/tmp/train_vs_torch-$(date +%Y%m%d-%H%M%S).tsv
: >"$log"

# A model argument as a directory (torch needs one): itself, or NAME under $LOWBIT_MODELS or the nearest
# shared/models above the current directory (lowbit's own search, src/core/paths.h).
model_dir() {
  local m=$1 d
  if [[ $m == 1b ]]; then
    d=${LOWBIT_SYNTH_1B:-/tmp/lowbit-synth-l1b}
    [[ -f $d/config.json ]] || "$lowbit" synth --shape llama3.2-1b --dtype bf16 --out "$d" >&2
    echo "$d"; return
  fi
  [[ -d $m ]] && { echo "$m"; return; }
  [[ -n ${LOWBIT_MODELS:-} && -d $LOWBIT_MODELS/$m ]] && { echo "$LOWBIT_MODELS/$m"; return; }
  d=$PWD
  while [[ $d != / ]]; do
    [[ -d $d/shared/models/$m ]] && { echo "$d/shared/models/$m"; return; }
    d=$(dirname "$d")
  done
  echo "model $m not found" >&2; exit 1
}

rc_flag=(); [[ $recompute == 0 ]] && rc_flag=(--no-recompute)

# One run: appends "setting impl round load1 tok_s peak_rss train_peak_rss" to the log.
run_one() {
  local setting=$1 impl=$2 round=$3 dir=$4 method=$5 batch=$6 micro=$7 seq=$8 tokens=$9 load out
  load=$(cut -d' ' -f1 /proc/loadavg)
  local w=$wait_t run_env=(env -u OMP_WAIT_POLICY)
  [[ $impl == lowbit ]] && w=$wait_l
  [[ $w == passive ]] && run_env+=(OMP_WAIT_POLICY=PASSIVE)
  if [[ $impl == lowbit ]]; then
    out=$("${run_env[@]}" "$bench" "$dir" --method "$method" --tokens "$tokens" --batch "$batch" \
      --micro-batch "$micro" --seq-len "$seq" --rank "$rank" --steps "$steps" --threads "$threads" \
      "${rc_flag[@]}" --no-peak 2>"$work/err") || { cat "$work/err" >&2; exit 1; }
  else
    out=$("${run_env[@]}" "$pyexe" "$here/tools/bench_train_torch.py" --model "$dir" --method "$method" \
      --tokens "$tokens" --batch "$batch" --micro-batch "$micro" --seq-len "$seq" --rank "$rank" \
      --steps "$steps" --threads "$threads" "${rc_flag[@]}" 2>"$work/err") || { cat "$work/err" >&2; exit 1; }
  fi
  local res; res=$(grep '^RESULT' <<<"$out")
  local tps rss trss
  tps=$(sed -E 's/.* tok_s=([^ ]+).*/\1/' <<<"$res")
  rss=$(sed -E 's/.* peak_rss=([^ ]+).*/\1/' <<<"$res")
  trss=$(sed -E 's/.* train_peak_rss=([^ ]+).*/\1/' <<<"$res")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$setting" "$impl" "$round" "$load" "$tps" "$rss" "$trss" \
    "$(cut -d' ' -f1 /proc/loadavg)" >>"$log"
  awk -v r="$round" -v i="$impl" -v s="$setting" -v t="$tps" -v m="$rss" -v tm="$trss" -v l0="$load" \
    -v l1="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
      printf "  round %s %-6s %-28s %8.1f tok/s  peak RSS %6.0f MiB (training %6.0f MiB)  load %s -> %s\n",
             r, i, s, t, m / 1048576, tm / 1048576, l0, l1 }' >&2
}

echo "threads $threads, OMP_WAIT_POLICY lowbit ${wait_l/default/unset} torch ${wait_t/default/unset}, rank $rank, recompute $recompute, $steps timed steps" \
  "after 1 warm-up per run, $rounds rounds; $(nproc) cores; uptime: $(uptime)" >&2
for s in "${settings[@]}"; do
  IFS=: read -r m method batch micro seq <<<"$s"
  tok=$work/tokens_${batch}x${seq}.bin
  [[ -f $tok ]] || "$bench" testbed-25m --dump-only --dump-tokens "$tok" --batch "$batch" --seq-len "$seq" \
    >/dev/null
done
for ((r = 1; r <= rounds; ++r)); do
  for s in "${settings[@]}"; do
    IFS=: read -r m method batch micro seq <<<"$s"
    dir=$(model_dir "$m")
    tok=$work/tokens_${batch}x${seq}.bin
    if ((r % 2)); then order=(torch lowbit); else order=(lowbit torch); fi
    for impl in "${order[@]}"; do run_one "$s" "$impl" "$r" "$dir" "$method" "$batch" "$micro" "$seq" "$tok"; done
  done
done

fi

# The table: medians over the rounds.
"$pyexe" - "$log" "$threads" "lowbit ${wait_l/default/unset}, torch ${wait_t/default/unset}" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
order, data = [], {}
for setting, impl, rnd, load0, tps, rss, trss, load1 in rows:
    if setting not in order:
        order.append(setting)
    d = data.setdefault((setting, impl), {"tps": [], "rss": [], "trss": [], "load": []})
    d["tps"].append(float(tps)); d["rss"].append(int(rss)); d["trss"].append(int(trss))
    d["load"] += [float(load0), float(load1)]
mib = lambda b: f"{b / 2**20:.0f} MiB"
med = statistics.median
print(f"\ntrain tokens/s and peak RSS, median of {len(data[(order[0], 'lowbit')]['tps'])} rounds; "
      f"threads {sys.argv[2]}, OMP_WAIT_POLICY {sys.argv[3]}")
hdr = ["setting", "torch tok/s", "lowbit tok/s", "ratio", "paired", "torch peak RSS", "lowbit peak RSS", "ratio",
       "torch train RSS", "lowbit train RSS", "load 1-min"]
out = [hdr]
for s in order:
    t, l = data[(s, "torch")], data[(s, "lowbit")]
    tt, lt, tr, lr, ttr, ltr = med(t["tps"]), med(l["tps"]), med(t["rss"]), med(l["rss"]), med(t["trss"]), med(l["trss"])
    loads = t["load"] + l["load"]
    # paired: the median over rounds of each round's lowbit / torch, the two runs of a round being neighbours in
    # time (so under a load that drifts, closer to like for like than the ratio of the medians).
    paired = med([x / y for x, y in zip(l["tps"], t["tps"])])
    out.append([s, f"{tt:.1f}", f"{lt:.1f}", f"{lt / tt:.2f}x", f"{paired:.2f}x", mib(tr), mib(lr), f"{lr / tr:.2f}x",
                mib(ttr), mib(ltr),
                f"{min(loads):.1f}-{max(loads):.1f}"])
w = [max(len(r[i]) for r in out) for i in range(len(hdr))]
for i, r in enumerate(out):
    print(" | ".join(c.ljust(w[j]) for j, c in enumerate(r)))
    if i == 0:
        print("-+-".join("-" * x for x in w))
print("ratio columns: lowbit / torch (tokens/s: higher is better; RSS: lower is better); paired = median of the per-round "
      "tokens/s ratios. peak RSS = the whole process (ru_maxrss); train RSS = the training steps alone (VmHWM reset "
      "after setup).")
EOF
((table_only)) || echo "runs: $log" >&2
