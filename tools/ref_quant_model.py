#!/usr/bin/env python3
"""Independent whole-model reference for lowbit's RTN and GPTQ (issue 3): quantizes every decoder layer's seven
linears in PyTorch and measures perplexity, for comparison with lowbit's numbers on the same tokens.

The per-matrix algorithms are tools/ref_quant.py's (GPTQ, Frantar et al. 2022, Algorithm 1 with lazy batches and
the Cholesky of H^-1; RTN with the GPTQ range convention). The model-level pipeline is the GPTQ authors'
sequential one (their llama.py): calibration windows are embedded, then for each layer the inputs of its linears
are captured over all windows, H = 2/N sum x^T x is accumulated per input (add_batch's running average), the
linears are quantized, and the layer's outputs are recomputed with the quantized weights to become the next
layer's inputs. --true-sequential quantizes q/k/v, then o, then gate/up, then down, re-capturing in between.
The forward is tools/ref_score.py's (checked against transformers by its --selftest).

    build/release/quant_eval MODEL --dump-tokens DIR --calib FILE --nsamples 16 --seqlen 2048 --eval wikitext2
    /usr/bin/python3 tools/ref_quant_model.py --model MODEL --tokens DIR --method gptq --wbits 4 --group 128 \
        [--act-order] [--true-sequential] [--fp32-scales] [--eval wikitext2] [--max-windows 8]
    /usr/bin/python3 tools/ref_quant_model.py --model MODEL --tokens DIR --cases rtn:4:128,gptq:4:128:act,... \
        --max-windows 2 --json OUT.json       (the fixture of tests/quant/testbed_quant_test.cpp)

Perplexity follows lowbit's protocol (eval/perplexity.h): the stream (BOS first) is cut into non-overlapping
windows of --seqlen tokens, each window's loss is the mean NLL of tokens 1..L-1, ppl = exp(mean window loss).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_quant  # noqa: E402
import ref_score  # noqa: E402

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj"]
SEQUENTIAL = [LINEARS[0:3], LINEARS[3:4], LINEARS[4:6], LINEARS[6:7]]


class Hessians:
    """add_batch of the GPTQ reference, one window at a time: H <- H·n/(n+1) + (2/(n+1)) xᵀx."""

    def __init__(self, names, dtype=torch.float64):
        self.names = set(names)
        self.dtype = dtype
        self.H, self.n = {}, {}

    def __call__(self, name, inp):
        if name not in self.names:
            return
        x = inp.to(self.dtype)
        if name not in self.H:
            self.H[name] = torch.zeros(x.shape[1], x.shape[1], dtype=self.dtype, device=x.device)
            self.n[name] = 0
        n = self.n[name]
        self.H[name] *= n / (n + 1)
        self.n[name] = n + 1
        x = math.sqrt(2.0 / (n + 1)) * x
        self.H[name] += x.t() @ x


def print_rel_err(layer, name, W, Q):
    """||W - Q||_F / ||W||_F of one linear, in the format of quant_eval --all-linears (compared line by line)."""
    rel = float((W - Q).double().norm() / W.double().norm())
    print(f"  {layer} {name:<18} rel_err {rel:.7f}", file=sys.stderr)


def quantize(W, H, a):
    fp16 = not a.fp32_scales
    if a.method == "rtn":
        return ref_quant.rtn(W, a.wbits, a.group, a.sym, fp16)[0]
    return ref_quant.gptq(W, H.float(), a.wbits, a.group, a.sym, fp16, act_order=a.act_order, damp=a.damp)[0]


@torch.no_grad()
def quantize_model(model, a):
    L = model.cfg["num_hidden_layers"]
    w = dict(model.w)
    if a.method == "rtn":
        for l in range(L):
            for n in LINEARS:
                k = f"model.layers.{l}.{n}.weight"
                w[k] = quantize(w[k], None, a)
        return w
    calib = np.load(os.path.join(a.tokens, "calib.npy"))
    tables = model.rope_tables(calib.shape[1])
    emb = model.w["model.embed_tokens.weight"]
    xs = [emb[model.ids(row)] for row in calib]
    for l in range(L):
        t0 = time.time()
        for group in SEQUENTIAL if a.true_sequential else [LINEARS]:
            hs = Hessians(group, torch.float32 if a.fp32_hessian else torch.float64)
            for x in xs:
                model.block(l, x, tables, w=w, hook=hs)
            for n in group:
                k = f"model.layers.{l}.{n}.weight"
                q = quantize(w[k], hs.H[n], a)
                if a.verbose:
                    print_rel_err(l, n, w[k], q)
                w[k] = q
        xs = [model.block(l, x, tables, w=w) for x in xs]
        print(f"  layer {l}: {time.time() - t0:.1f} s", file=sys.stderr)
    return w


@torch.no_grad()
def perplexity(model, w, ids, seqlen, max_windows):
    n = len(ids) // seqlen
    if max_windows:
        n = min(n, max_windows)
    tables = model.rope_tables(seqlen)
    losses = []
    for i in range(n):
        win = model.ids(ids[i * seqlen:(i + 1) * seqlen])
        x = w["model.embed_tokens.weight"][win]
        for l in range(model.cfg["num_hidden_layers"]):
            x = model.block(l, x, tables, w=w)
        logits = model.norm(x, w["model.norm.weight"]) @ model.head.T
        lp = torch.log_softmax(logits[:-1].double(), dim=-1)
        losses.append(float(-lp.gather(1, win[1:, None]).mean()))
    return math.exp(sum(losses) / len(losses)), n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="directory written by quant_eval --dump-tokens")
    ap.add_argument("--method", choices=["fp", "rtn", "gptq"], default="fp")
    ap.add_argument("--wbits", type=int, default=4)
    ap.add_argument("--group", type=int, default=128, help="-1 = per output channel")
    ap.add_argument("--sym", action="store_true")
    ap.add_argument("--act-order", action="store_true")
    ap.add_argument("--true-sequential", action="store_true")
    ap.add_argument("--fp32-scales", action="store_true", help="GPTQ's original fp32 scales (lowbit: fp16)")
    ap.add_argument("--fp32-hessian", action="store_true", help="accumulate H in fp32 (default fp64)")
    ap.add_argument("--eval", default="wikitext2")
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--max-windows", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", default="", help="method:wbits:group[:act],... (overrides the single case)")
    ap.add_argument("--verbose", action="store_true", help="print each linear's relative quantization error")
    ap.add_argument("--damp", type=float, default=0.01, help="GPTQ dampening, fraction of mean(diag H)")
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda (TF32 is switched off)")
    ap.add_argument("--json", default="", help="write {settings, ppl: {dataset: {case: ppl}}} here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = ref_score.Llama(a.model, a.device)
    cases = [(a.method, a.wbits, a.group, a.act_order)]
    if a.cases:
        cases = [(c.split(":")[0], int(c.split(":")[1]), int(c.split(":")[2]), c.endswith(":act"))
                 for c in a.cases.split(",")]
    out = {}
    for method, wbits, group, act in cases:
        a.method, a.wbits, a.group, a.act_order = method, wbits, group, act
        t0 = time.time()
        w = model.w if a.method == "fp" else quantize_model(model, a)
        label = a.method if a.method == "fp" else (
            f"{a.method} w{a.wbits} g{a.group}{' act-order' if a.act_order else ''}")
        for ds in a.eval.split(","):
            ids = np.load(os.path.join(a.tokens, ds + ".npy"))
            ppl, n = perplexity(model, w, ids, a.seqlen, a.max_windows)
            print(f"ref {label}{' fp32-scales' if a.fp32_scales else ''}: {ds} ppl {ppl:.4f} ({n} windows, "
                  f"{time.time() - t0:.0f} s)", flush=True)
            out.setdefault(ds, {})[label] = ppl
    if a.json:
        calib = np.load(os.path.join(a.tokens, "calib.npy"))
        meta = {"generator": "tools/ref_quant_model.py", "nsamples": int(calib.shape[0]),
                "calib_seqlen": int(calib.shape[1]), "seqlen": a.seqlen, "max_windows": a.max_windows,
                "fp32_scales": a.fp32_scales, "fp32_hessian": a.fp32_hessian,
                "true_sequential": a.true_sequential, "damp": a.damp, "device": a.device}
        with open(a.json, "w") as f:
            json.dump({"settings": meta, "ppl": out}, f, indent=1)
            f.write("\n")

if __name__ == "__main__":
    main()
