#!/bin/sh
# PB-LLM / BiLLM reference checks (tools/ref_pbllm.py, tools/ref_billm.py), run from the repository root,
# everything under nice:
#   tools/check_ref_binary.sh pbllm|billm layers [DUMPDIR]
#       per-linear comparison of a lowbit dump (LOWBIT_QUANT_DUMP=DIR); exit 1 if a linear's masks differ AND its
#       reconstruction error tr(dW H dW^T)/tr(W H W^T) differs from the reference's by more than 0.1%.
#       Without DUMPDIR: the synthetic self-check (clean dump must pass, a corrupted one must fail).
#   tools/check_ref_binary.sh pbllm|billm model [DAMPS="0.01 0.0107 0.0115"] [WINDOWS=8] [NSAMPLES=16] [OPTS...]
#       whole-model reference perplexity on wikitext2, one run per dampening value (the methods are deterministic;
#       perturbing percdamp gives decorrelated draws), on the testbed calibration windows dumped by quant_eval.
#       OPTS go to the script, e.g. --low-frac 0.8 (pbllm; default 0.9) or --salient-metric magnitude.
set -e
py="nice -n 19 /usr/bin/python3"
shared=${LOWBIT_SHARED:-../shared}
method=$1
case "$method" in
  pbllm|billm) ;;
  *) echo "usage: $0 pbllm|billm layers [DUMPDIR] | model [DAMPS] [WINDOWS] [NSAMPLES] [OPTS...]" >&2; exit 2 ;;
esac
script=tools/ref_$method.py
mode=${2:-layers}
if [ "$mode" = layers ]; then
  if [ -n "$3" ]; then
    $py $script layers "$3" --strict
  else
    d=$(mktemp -d /tmp/lowbit-$method-synth.XXXXXX)
    $py $script layers --make-synthetic "$d/clean" --strict
    if $py $script layers --make-synthetic "$d/corrupt" --corrupt 32 --strict >"$d/corrupt.log"; then
      cat "$d/corrupt.log"
      echo "self-check FAILED: a corrupted dump passed --strict" >&2
      rm -rf "$d"
      exit 1
    fi
    echo "self-check ok: a dump with 32 corrupted mask entries fails --strict"
    rm -rf "$d"
  fi
  exit 0
fi
[ "$mode" = model ] || { echo "unknown mode $mode" >&2; exit 2; }
damps=${3:-0.01 0.0107 0.0115}
win=${4:-8}
ns=${5:-16}
shift $(( $# < 5 ? $# : 5 ))
m=$shared/models/testbed-25m
tok=$(mktemp -d /tmp/lowbit-$method.XXXXXX)
[ -x build/release/quant_eval ] || nice -n 19 sh tools/build_quant_eval.sh >/dev/null
nice -n 19 build/release/quant_eval "$m" --dump-tokens "$tok" --calib "$shared/data/calib/testbed-calib.txt" \
  --nsamples "$ns" --seqlen 2048 --eval wikitext2 >/dev/null
for dp in $damps; do
  $py $script model --model "$m" --tokens "$tok" --damp "$dp" --eval wikitext2 --max-windows "$win" "$@" \
    2>/dev/null | grep -E ' ppl | bits '
done
rm -rf "$tok"
