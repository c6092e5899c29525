#!/bin/sh
# Issue 3's RTN/GPTQ settings on testbed-25m, quantized and evaluated by lowbit (tools/quant_eval) and by the
# independent PyTorch reference tools/ref_quant_model.py on the same tokens; prints both perplexities and their
# relative difference. Run from the repository root after `cmake --build --preset release`:
#   tools/check_ref_quant_model.sh [NSAMPLES=16] [WINDOWS=4] [DATASETS=wikitext2,ptb,c4-sample]
set -e
ns=${1:-16}
win=${2:-4}
ds=${3:-wikitext2,ptb,c4-sample}
shared=${LOWBIT_SHARED:-../shared}
m=$shared/models/testbed-25m
c=$shared/data/calib/testbed-calib.txt
tok=$(mktemp -d /tmp/lowbit-refq.XXXXXX)
sh tools/build_quant_eval.sh >/dev/null
build/release/quant_eval "$m" --dump-tokens "$tok" --calib "$c" --nsamples "$ns" --seqlen 2048 --eval "$ds" >/dev/null
for method in rtn gptq; do
  for s in "8 -1" "4 -1" "4 128" "3 128" "3 -1" "2 128" "4 128 --act-order"; do
    set -- $s
    [ "$method" = rtn ] && [ -n "$3" ] && continue
    ours=$(build/release/quant_eval "$m" --method $method --wbits $1 --group $2 $3 --calib "$c" --nsamples "$ns" \
      --seqlen 2048 --eval "$ds" --max-windows "$win" 2>/dev/null | grep ' ppl ')
    ref=$(/usr/bin/python3 tools/ref_quant_model.py --model "$m" --tokens "$tok" --method $method --wbits $1 \
      --group $2 $3 --eval "$ds" --max-windows "$win" 2>/dev/null)
    echo "$ours" | while read -r line; do
      d=$(echo "$line" | sed 's/.*: \([^ ]*\) ppl.*/\1/')
      po=$(echo "$line" | sed 's/.* ppl \([0-9.]*\).*/\1/')
      pr=$(echo "$ref" | grep ": $d ppl" | sed 's/.* ppl \([0-9.]*\).*/\1/')
      echo "$method w$1 g$2 $3 $d lowbit $po ref $pr" |
        awk '{printf "%-28s %-10s lowbit %10.4f  ref %10.4f  %+.3f%%\n", $1" "$2" "$3" "($4=="--act-order"?"act":""), $(NF-4), $(NF-2), $NF, 100*($(NF-2)/$NF-1)}'
    done
  done
done
rm -rf "$tok"
