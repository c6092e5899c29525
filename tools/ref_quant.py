#!/usr/bin/env python3
"""Independent PyTorch reference of RTN and GPTQ for comparing lowbit's C++ results on a real layer.

GPTQ follows the published algorithm (Frantar et al. 2022, "GPTQ", Algorithm 1 with the lazy batch updates of
Sec. 4 "Step 2", the Cholesky-of-the-inverse of "Step 3", 1% dampening, dead columns, act-order and groups as the
authors' reference code does them). RTN and the (S, Z) ranges follow the GPTQ convention: the range includes 0,
S = (xmax - xmin) / maxq, Z = round(-xmin / S), round half to even (torch.round).

    quant_eval testbed-25m --dump DIR --layer 3 --site mlp --calib FILE --nsamples 16 --seqlen 2048
    /usr/bin/python3 tools/ref_quant.py DIR [--seqlen 2048] [--fp32-scales] [--hessian ours|x]

DIR holds W.npy (rows, cols), X.npy (tokens, cols) and H.npy (our Hessian), plus our results <case>_What.npy /
<case>_codes.npy. For each case the script prints max |W_ours - W_ref|, the number of codes that differ, and the
layer-output error ||(W - W^)X^T||^2 / ||W X^T||^2 of both.

--fp32-scales: scales stay fp32 (the original GPTQ code). By default they are rounded to fp16 before the codes are
computed, lowbit's documented convention (the packed format stores fp16 scales).
--hessian x (default): H is accumulated here from X like GPTQ's add_batch (running average over windows of
--seqlen tokens); --hessian ours uses H.npy, isolating the quantization algorithm from the accumulation.
"""
import argparse
import json
import os

import numpy as np
import torch


def ranges(x, bits, sym):
    """(xmin, xmax) per row of x (rows, n) under the GPTQ convention."""
    zeros = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    xmin = torch.minimum(x.min(dim=1).values, zeros)
    xmax = torch.maximum(x.max(dim=1).values, zeros)
    if sym:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = -xmax
    same = xmin == xmax
    xmin[same] = -1.0
    xmax[same] = 1.0
    return xmin, xmax


def params(x, bits, sym, fp16):
    maxq = 2 ** bits - 1
    xmin, xmax = ranges(x, bits, sym)
    scale = (xmax - xmin) / maxq
    if sym:
        zero = torch.full_like(scale, (maxq + 1) // 2)
    else:
        zero = torch.clamp(torch.round(-xmin / scale), 0, maxq)
    if fp16:
        scale = scale.half().float()
        scale[scale == 0] = 2.0 ** -24
    return scale, zero


def fake_quant(w, scale, zero, maxq):
    """w (rows,) or (rows, n) with per-row scale/zero. Returns (dequantized, codes)."""
    if w.dim() == 2:
        scale, zero = scale[:, None], zero[:, None]
    q = torch.clamp(torch.round(w / scale) + zero, 0, maxq)
    return scale * (q - zero), q


def rtn(W, bits, group, sym, fp16):
    rows, cols = W.shape
    g = group if group > 0 else cols
    out = torch.empty_like(W)
    codes = torch.empty_like(W)
    maxq = 2 ** bits - 1
    for c0 in range(0, cols, g):
        s, z = params(W[:, c0:c0 + g], bits, sym, fp16)
        out[:, c0:c0 + g], codes[:, c0:c0 + g] = fake_quant(W[:, c0:c0 + g], s, z, maxq)
    return out, codes


def hessian_from_x(X, seqlen):
    """GPTQ's add_batch: H = 2/n_samples * sum over samples of x^T x, as a running average (fp32)."""
    cols = X.shape[1]
    H = torch.zeros(cols, cols, device=X.device)
    n = 0
    for t0 in range(0, X.shape[0], seqlen):
        inp = X[t0:t0 + seqlen].t()
        H *= n / (n + 1)
        n += 1
        inp = (2.0 / n) ** 0.5 * inp
        H += inp @ inp.t()
    return H


def gptq(W, H, bits, group, sym, fp16, act_order=False, damp=0.01, block=128):
    W = W.clone()
    H = H.clone()
    rows, cols = W.shape
    maxq = 2 ** bits - 1
    if group <= 0:
        scale, zero = params(W, bits, sym, fp16)  # per channel, before dead columns are zeroed
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    perm = None
    if act_order:
        # stable: equal diagonals keep their order (lowbit does the same; torch's default sort is not stable)
        perm = torch.sort(torch.diag(H), descending=True, stable=True).indices
        W = W[:, perm]
        H = H[perm][:, perm]
    H[range(cols), range(cols)] += damp * torch.mean(torch.diag(H))
    L = torch.linalg.cholesky(H)
    U = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)  # H^-1 = U^T U
    Q = torch.zeros_like(W)
    codes = torch.zeros_like(W)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].clone()
        E1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            col = i1 + i
            if group > 0 and col % group == 0:
                scale, zero = params(W[:, col:col + group], bits, sym, fp16)
            w = W1[:, i]
            d = U[col, col]
            q, c = fake_quant(w, scale, zero, maxq)
            Q[:, col], codes[:, col] = q, c
            err = (w - q) / d
            W1[:, i:] -= err[:, None] * U[col, i1 + i:i2][None, :]
            E1[:, i] = err
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    if perm is not None:
        inv = torch.argsort(perm)
        Q, codes = Q[:, inv], codes[:, inv]
    return Q, codes


def rel_output_error(W, What, X):
    return float(((W - What) @ X.t()).pow(2).sum() / (W @ X.t()).pow(2).sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--fp32-scales", action="store_true")
    ap.add_argument("--hessian", choices=["x", "ours"], default="x")
    ap.add_argument("--json", default="", help="write each case's reference output error here (test fixture)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    load = lambda n: torch.from_numpy(np.load(os.path.join(a.dir, n)))
    W, X = load("W.npy").float(), load("X.npy").float()
    H = hessian_from_x(X, a.seqlen) if a.hessian == "x" else load("H.npy").float()
    Xs = X[:: max(1, X.shape[0] // 4096)]  # output error on a token subsample
    fp16 = not a.fp32_scales
    cases = {
        "rtn_w4g128": lambda: rtn(W, 4, 128, False, fp16),
        "rtn_w3": lambda: rtn(W, 3, 0, False, fp16),
        "gptq_w4g128": lambda: gptq(W, H, 4, 128, False, fp16),
        "gptq_w4": lambda: gptq(W, H, 4, 0, False, fp16),
        "gptq_w3g128": lambda: gptq(W, H, 3, 128, False, fp16),
        "gptq_w2g128": lambda: gptq(W, H, 2, 128, False, fp16),
        "gptq_w4g128_act": lambda: gptq(W, H, 4, 128, False, fp16, act_order=True),
    }
    print(f"W {tuple(W.shape)}, X {tuple(X.shape)}, hessian from {a.hessian}, "
          f"{'fp32' if a.fp32_scales else 'fp16'} scales")
    fixture = {}
    for name, fn in cases.items():
        ref, ref_codes = fn()
        ours = load(f"{name}_What.npy").float()
        our_codes = load(f"{name}_codes.npy")
        diff = (ours - ref).abs().max().item()
        ncode = int((our_codes != ref_codes.to(torch.int32)).sum())
        e_ours, e_ref = rel_output_error(W, ours, Xs), rel_output_error(W, ref, Xs)
        print(f"{name:16s} max|dW| {diff:.3e}  codes differing {ncode:6d} / {W.numel()} "
              f"({100.0 * ncode / W.numel():.3f}%)  rel out err ours {e_ours:.5f} ref {e_ref:.5f} "
              f"({100 * (e_ours / e_ref - 1):+.2f}%)")
        fixture[name] = {"rel_out_err": e_ref, "codes_differing_from_lowbit": ncode}
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"W": list(W.shape), "X": list(X.shape), "hessian": a.hessian, "cases": fixture}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
