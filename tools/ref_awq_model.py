#!/usr/bin/env python3
"""Independent whole-model reference for lowbit's AWQ (issue 3), in PyTorch, for comparison on the same tokens.

AWQ (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization", §3.2 eq. 4-5), as the authors' pipeline does
it (auto_scale + auto_clip, then RTN), written from the paper and the conventions in src/quant/awq.h:
  - each layer sees the full-precision outputs of the previous layer (the calibration stream is never quantized);
    the calibration windows are cut to their first --awq-seqlen tokens (lowbit's default 512);
  - s_X = mean over tokens of |x| per input channel of each site; s = max(s_X^a, 1e-4) / sqrt(max s * min s) for
    a = 0, 1/20, ..., 19/20; the candidate weight is Q(W diag(s)) diag(s)^-1 and a minimises the output MSE of:
      q/k/v   -> the attention output through the full-precision o_proj
      o       -> o_proj's output (only when v_proj and o_proj have the same shape, i.e. no GQA)
      gate/up -> the MLP output with full-precision down_proj
      down    -> down_proj's output
    all four on the full-precision block; then the scales are folded (RMSNorm weight / s, next columns * s, or
    previous rows / s);
  - clipping for every linear but q and k: per (row, group), m = max|w| (1 - i/20), i = 0..9, minimising the mean
    over every floor(n/512)-th token of (x_g . (Q(clamp(w_g, -m, m)) - w_g))^2, x divided by the folded scale;
  - Q is tools/ref_quant.py's RTN (GPTQ range convention, fp16 scales), the same as lowbit's primitive.

    build/release/quant_eval MODEL --dump-tokens DIR --calib FILE --nsamples 32 --seqlen 2048 \
        --eval wikitext2,ptb,c4-sample
    /usr/bin/python3 tools/ref_awq_model.py --model MODEL --tokens DIR --cases 4:128,3:128 --max-windows 4
and on lowbit's side: quant_eval MODEL --method awq --wbits 4 --group 128 --calib FILE --nsamples 32 ...
(which prints the chosen a per layer and site, as this script does).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_quant  # noqa: E402
import ref_quant_model  # noqa: E402
import ref_score  # noqa: E402

SITES = ["self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"]  # the input each site sees


class Stop(Exception):
    pass


def fq(W, a):
    return ref_quant.rtn(W, a.wbits, a.group, False, True)[0]


def scales(mean_abs, alpha, fp64=False):
    """mean_abs in fp64; s in fp32 (pow in fp32 like lowbit's powf, or in fp64 and rounded once: a change of s by
    at most an ulp, the reference's rounding perturbation)."""
    s = mean_abs.pow(alpha) if fp64 else mean_abs.float().pow(alpha)
    s = s.clamp(min=1e-4)
    return (s / (s.max() * s.min()).sqrt()).float()


def search(mean_abs, loss, fp64=False):
    """Returns (alpha, s) with the least loss(s) over the 20-point grid (the first on ties)."""
    best = (float("inf"), None, None)
    for r in range(20):
        s = scales(mean_abs, r / 20, fp64)
        e = loss(s)
        if e < best[0]:
            best = (e, r / 20, s)
    return best[1], best[2]


def clip(W, X, a):
    """AWQ's auto_clip: W (rows, cols) clamped per (row, group) to the best m for inputs X (n, cols)."""
    rows, cols = W.shape
    g = a.group if a.group > 0 else cols
    G = cols // g
    absmax = W.abs().view(rows, G, g).amax(-1)  # (rows, G)
    best_err = torch.full((rows, G), float("inf"), dtype=torch.float64, device=W.device)
    best_m = absmax.clone()
    X = X.to(a.dtype)
    for i in range(10):
        m = absmax * (1 - i / 20)
        mm = m.repeat_interleave(g, dim=1)
        delta = fq(torch.maximum(torch.minimum(W, mm), -mm), a) - W
        for gi in range(G):
            sl = slice(gi * g, (gi + 1) * g)
            err = (X[:, sl] @ delta[:, sl].T.to(a.dtype)).double().pow(2).mean(0)  # (rows,)
            better = err < best_err[:, gi]
            best_err[better, gi] = err[better]
            best_m[better, gi] = m[better, gi]
    mm = best_m.repeat_interleave(g, dim=1)
    return torch.maximum(torch.minimum(W, mm), -mm)


@torch.no_grad()
def quantize_model(model, calib, a):
    w = dict(model.w)
    T = min(a.awq_seqlen, calib.shape[1]) if a.awq_seqlen > 0 else calib.shape[1]
    tables = model.rope_tables(T)
    xs = [w["model.embed_tokens.weight"][model.ids(row[:T])] for row in calib]
    alphas = []
    for l in range(model.cfg["num_hidden_layers"]):
        t0 = time.time()
        p = f"model.layers.{l}."
        W = {n: w[p + n + ".weight"] for n in ref_quant_model.LINEARS}
        caps = {n: [] for n in SITES}

        def capture(name, inp):
            if name in caps:
                caps[name].append(inp)

        outs = [model.block(l, x, tables, w=w, hook=capture) for x in xs]  # full precision
        X = {n: torch.cat(v) for n, v in caps.items()}  # (tokens, cols)
        mean_abs = {n: X[n].abs().double().mean(0) for n in SITES}
        Wo = W["self_attn.o_proj"]
        attn_ref = X["self_attn.o_proj"] @ Wo.T

        def attn_loss(s):
            wq = dict(w)
            for n in ref_quant_model.LINEARS[:3]:
                wq[p + n + ".weight"] = fq(W[n] * s, a) / s
            got = []

            def stop_at_o(name, inp):
                if name == "self_attn.o_proj":
                    got.append(inp @ Wo.T)
                    raise Stop

            for x in xs:
                try:
                    model.block(l, x, tables, w=wq, hook=stop_at_o)
                except Stop:
                    pass
            return float((torch.cat(got) - attn_ref).double().pow(2).mean())

        def linear_loss(n):
            Xn = X[n].to(a.dtype)
            ref = Xn @ W[n].T.to(a.dtype)
            return lambda s: float((Xn @ (fq(W[n] * s, a) / s).T.to(a.dtype) - ref).double().pow(2).mean())

        def mlp(Wg, Wu, h):
            Wg, Wu, Wd = Wg.to(a.dtype), Wu.to(a.dtype), W["mlp.down_proj"].to(a.dtype)
            return (torch.nn.functional.silu(h @ Wg.T) * (h @ Wu.T)) @ Wd.T

        h = X["mlp.gate_proj"].to(a.dtype)
        mlp_ref = mlp(W["mlp.gate_proj"], W["mlp.up_proj"], h)

        def mlp_loss(s):
            Wg, Wu = fq(W["mlp.gate_proj"] * s, a) / s, fq(W["mlp.up_proj"] * s, a) / s
            return float((mlp(Wg, Wu, h) - mlp_ref).double().pow(2).mean())

        al_attn, s_attn = search(mean_abs["self_attn.q_proj"], attn_loss, a.fp64_scales)
        search_o = W["self_attn.v_proj"].shape == Wo.shape
        al_o, s_o = search(mean_abs["self_attn.o_proj"], linear_loss("self_attn.o_proj"), a.fp64_scales) if search_o else (
            float("nan"), None)
        al_mlp, s_mlp = search(mean_abs["mlp.gate_proj"], mlp_loss, a.fp64_scales)
        al_down, s_down = search(mean_abs["mlp.down_proj"], linear_loss("mlp.down_proj"), a.fp64_scales)
        alphas.append([al_attn, al_o, al_mlp, al_down])

        # Fold: norm / s and the next columns * s, or the previous rows / s and the next columns * s.
        Wf = dict(W)
        w[p + "input_layernorm.weight"] = w[p + "input_layernorm.weight"] / s_attn
        for n in ref_quant_model.LINEARS[:3]:
            Wf[n] = Wf[n] * s_attn
        if s_o is not None:
            Wf["self_attn.v_proj"] = Wf["self_attn.v_proj"] / s_o[:, None]
            Wf["self_attn.o_proj"] = Wf["self_attn.o_proj"] * s_o
        w[p + "post_attention_layernorm.weight"] = w[p + "post_attention_layernorm.weight"] / s_mlp
        for n in ["mlp.gate_proj", "mlp.up_proj"]:
            Wf[n] = Wf[n] * s_mlp
        Wf["mlp.up_proj"] = Wf["mlp.up_proj"] / s_down[:, None]
        Wf["mlp.down_proj"] = Wf["mlp.down_proj"] * s_down

        # Clip on every step-th token's inputs (scaled like the weights' columns), then RTN.
        tokens = X["self_attn.q_proj"].shape[0]
        step = max(1, tokens // 512)
        sub = {n: X[n][::step] for n in SITES}
        clip_x = {"self_attn.v_proj": sub["self_attn.q_proj"] / s_attn,
                  "self_attn.o_proj": sub["self_attn.o_proj"] / s_o if s_o is not None else sub["self_attn.o_proj"],
                  "mlp.gate_proj": sub["mlp.gate_proj"] / s_mlp, "mlp.up_proj": sub["mlp.gate_proj"] / s_mlp,
                  "mlp.down_proj": sub["mlp.down_proj"] / s_down}
        for n in ref_quant_model.LINEARS:
            Wc = clip(Wf[n], clip_x[n], a) if n in clip_x else Wf[n]
            w[p + n + ".weight"] = fq(Wc, a)
            if a.verbose:  # of the scaled, clipped W', as lowbit's quant_eval prints it
                ref_quant_model.print_rel_err(l, n, Wc, w[p + n + ".weight"])
        xs = outs
        print(f"  layer {l}: {time.time() - t0:.1f} s  awq alpha {al_attn:.2f} {al_o:.2f} {al_mlp:.2f} "
              f"{al_down:.2f}", file=sys.stderr, flush=True)
    return w, alphas


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="directory written by quant_eval --dump-tokens")
    ap.add_argument("--cases", default="4:128", help="wbits:group,... (group -1 = per output channel)")
    ap.add_argument("--awq-seqlen", type=int, default=512)
    ap.add_argument("--eval", default="wikitext2,ptb,c4-sample")
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--max-windows", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fp64-search", action="store_true",
                    help="the MLP's and down_proj's scale losses and the clip errors in fp64 (default fp32 products, as lowbit): "
                         "the reference's own sensitivity to rounding")
    ap.add_argument("--fp64-scales", action="store_true",
                    help="s_X^a in fp64, rounded to fp32 once (s moves by at most an ulp): the reference's own "
                         "sensitivity to rounding")
    ap.add_argument("--verbose", action="store_true", help="print each linear's relative quantization error")
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda (TF32 is switched off)")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    a.dtype = torch.float64 if a.fp64_search else torch.float32
    model = ref_score.Llama(a.model, a.device)
    calib = np.load(os.path.join(a.tokens, "calib.npy"))
    out = {"settings": {"generator": "tools/ref_awq_model.py", "nsamples": int(calib.shape[0]),
                        "awq_seqlen": a.awq_seqlen, "fp64_search": a.fp64_search,
                        "fp64_scales": a.fp64_scales, "seqlen": a.seqlen, "max_windows": a.max_windows, "device": a.device},
           "ppl": {}, "alpha": {}}
    for case in a.cases.split(","):
        a.wbits, a.group = (int(v) for v in case.split(":"))
        label = f"awq w{a.wbits} g{a.group}"
        t0 = time.time()
        w, alphas = quantize_model(model, calib, a)
        # JSON has no NaN: a site that was not searched (o_proj with GQA) is null.
        out["alpha"][label] = [[None if v != v else v for v in layer] for layer in alphas]
        for ds in filter(None, a.eval.split(",")):  # --eval "" quantizes only
            ids = np.load(os.path.join(a.tokens, ds + ".npy"))
            ppl, n = ref_quant_model.perplexity(model, w, ids, a.seqlen, a.max_windows)
            print(f"ref {label}: {ds} ppl {ppl:.4f} ({n} windows, {time.time() - t0:.0f} s)", flush=True)
            out["ppl"].setdefault(ds, {})[label] = ppl
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
