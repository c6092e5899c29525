#!/usr/bin/env python3
"""Independent PyTorch reference for lowbit's PB-LLM (Shang, Yuan, Wu, Dong 2023, "PB-LLM: Partially Binarized
Large Language Models"), PTQ path, for comparison with the C++ implementation.

It ports the authors' `gptq_pb/` code (github hahnyuan/PB-LLM: run.py, gptq.py LowHighGPT.fasterquant,
low_quant.py LowQuantizer 'xnor', high_quant.py HighQuantizer), written from reading it, for the README's run
    run.py <model> c4 xnor --low_frac F --high_bit 8 --salient_metric hessian --groupsize 128
All arithmetic is float32 like upstream (torch, CPU); H is taken as given (float32, H = 2/N sum x x^T accumulated
GPTQ-style over N calibration sequences, BEFORE the dead-column fix and dampening).
Per linear W (rows = out features, cols = in features):
  1. HighQuantizer(high_bit, perchannel=True, sym=False, mse=False).calibrate(W) on the ORIGINAL W, before the
     dead-column zeroing (gptq.py calls it first): per output row, xmin = min(min_j W, 0), xmax = max(max_j W, 0),
     rows with xmin == xmax == 0 get (-1, +1); scale = (xmax - xmin) / (2^high_bit - 1), zero = round(-xmin/scale).
     quantize(x) = scale * (clamp(round(x / scale) + zero, 0, 2^high_bit - 1) - zero)   (round = half to even)
  2. GPTQ's H fix: dead = diag H == 0 -> H[dead,dead] = 1, W[:,dead] = 0; H += percdamp * mean(diag H) * I
     (mean taken after the dead fix); Hinv = upper Cholesky factor of H^-1 (cholesky, cholesky_inverse,
     cholesky(upper=True)).
  3. Salience and masks, per column group g = [st, st+groupsize) (groupsize -1 = whole row), ONCE, before any GPTQ
     update, i.e. from W after step 2 (original values, dead columns zeroed):
       hessian:   s_ij = W_ij^2 / Hinv_jj^2     (float32: (W**2) / (diag**2))
       magnitude: s_ij = |W_ij|
     thr = sort(s_g flattened over rows x group columns)[int(numel * low_frac)]   (Python float product, truncated)
     binarized = s <= thr ("mask" upstream; ties go to binarized), salient = the rest. So each group binarizes
     int(numel*low_frac) + 1 entries plus ties (the design summary's "exactly low_frac" is off by one); low_frac
     must be in (0, 1) (0 means "do not quantize" in run.py, 1 indexes past the end).
  4. LowQuantizer 'xnor' calibrate(W_g * binarized_g), per output row of the group, also ONCE from the same
     (pre-GPTQ) W: mu = mean_j(W*b) over ALL group columns (the salient positions contribute zeros), alpha =
     mean_j |W*b - mu| over ALL group columns (salient positions contribute |mu|) - upstream quirk, kept.
     quantize(w) = sign(w - mu) * alpha + mu   (sign(0) = 0, i.e. w == mu gives mu).
  5. GPTQ without act-order, blocks of `blocksize` columns (groupsize % blocksize == 0 asserted upstream), column i
     in order: w = current (updated) column; q = high(w) where salient, low_g(w) where binarized (g = block's group,
     upstream: col_st // groupsize); err = (w - q) / Hinv_ii; W[:, i:blk_end] -= err Hinv[i, i:blk_end]; after the
     block W[:, blk_end:] -= Err_blk Hinv[blk, blk_end:]. The result is the Q columns (dead columns included: they
     hold 0 and are quantized like the rest).
  Bits (paper's accounting, scales/bitmap not counted): (1 - r) * 1 + r * high_bit, r = salient fraction.

Modes (tools/ref_billm.py has the same harness, imported from here)
  ref_pbllm.py layers DUMPDIR [--json OUT] [--strict] [--tol 0.001] [--float64]
      DUMPDIR/<layer>.<name>/ as written by lowbit (env LOWBIT_QUANT_DUMP=DIR): W.npy (f32 rows x cols, the weight
      as the method received it), H.npy (f32 cols x cols, 2/N sum x x^T before dampening/dead fix), Q.npy (f32,
      lowbit's dequantized result), mask.npy (uint8, 1 = salient (kept at high_bit), 0 = binarized), meta.json
      {"method":"pbllm","low_frac":F,"high_bit":8,"group":128,"salient_metric":"hessian","damp":0.01,"block":128}.
      Runs steps 1-5 on W, H with those options and prints per linear: differing mask entries (and rows),
      max |Q - Qref|, e = tr((Q-W) H (Q-W)^T) / tr(W H W^T) (H, W as dumped, float64) of lowbit and of the
      reference and |e_lowbit/e_ref - 1|; when masks differ also the reference run with lowbit's mask forced
      ("given mask": separates mask decisions from steps 1/4/5).
      --strict exits 1 if any linear has differing masks AND |e_lowbit/e_ref - 1| > --tol (0.001), the
      acceptance criterion "masks identical or reconstruction error within 0.1%" (also on shape errors or
      non-finite Q). A linear whose masks agree but whose e differs by more than --tol is reported as a WARNING
      (it fails only with --strict-error). --float64 runs the reference in float64 (diagnostic only).
  ref_pbllm.py layers --make-synthetic DIR [--seed S] [--corrupt K]
      writes a small synthetic dump (3 linears, random W, H = 2/N X^T X of random correlated X with outlier
      channels, one dead input channel) whose "lowbit" Q/mask come from this reference and compares it (exit 0).
      --corrupt K flips, in the first linear, the K salient entries of largest |W| to binarized and recomputes Q
      with that mask forced (consistent GPTQ compensation): --strict must then exit 1.
  ref_pbllm.py model --model ../shared/models/testbed-25m --tokens DIR [--low-frac 0.9] [--high-bit 8]
      [--group 128] [--salient-metric hessian|magnitude] [--damp 0.01] [--block 128] [--true-sequential]
      [--eval wikitext2] [--max-windows N] [--json OUT]
      whole-model PB-LLM with tools/ref_quant_model.py's sequential pipeline (calibration windows DIR/calib.npy
      from quant_eval --dump-tokens; per layer, H of each linear = ref_quant_model.Hessians (GPTQ add_batch,
      2/N sum x x^T over windows, float64) cast to float32; the layer's outputs recomputed with the quantized
      weights) and perplexity (ref_quant_model.perplexity, tools/ref_score.py's forward). Prints ' ppl ' lines
      and the paper's bit accounting. Upstream (run.py quant_sequential, both repos) collects H for all seven
      linears of a layer in one pass (no true-sequential; --true-sequential is an option here). The method is
      deterministic (no seed): independent "draws" for a spread are made by perturbing the dampening, e.g.
      --damp 0.01 / 0.0107 / 0.0115 (tools/check_ref_binary.sh model runs those three).
Source note: gptq_pb/high_quant.py itself was not in the code index used; HighQuantizer was read from a verbatim
copy of PB-LLM's quantizer classes (LowQuantizer identical to gptq_pb/low_quant.py, HighQuantizer(bits,
perchannel=False, sym=True, mse=False, ...) matching run.py's positional call HighQuantizer(high_bit, True, False,
False)); it is GPTQ's Quantizer.find_params/quantize min-max (mse off).

    build/release/quant_eval ../shared/models/testbed-25m --dump-tokens /tmp/tok \\
        --calib ../shared/data/calib/testbed-calib.txt --nsamples 16 --seqlen 2048 --eval wikitext2
    nice -n 19 /usr/bin/python3 tools/ref_pbllm.py model --model ../shared/models/testbed-25m --tokens /tmp/tok \\
        --low-frac 0.9 --max-windows 4
    nice -n 19 /usr/bin/python3 tools/ref_pbllm.py layers --make-synthetic /tmp/pbllm-synth --strict
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

F32 = torch.float32


# ---------------------------------------------------------------- shared GPTQ pieces ----
def gptq_prepare(W, H, damp, dtype=F32):
    """gptq.py fasterquant prologue (same in PB-LLM's LowHighGPT and BiLLM's BRAGPTQ): copies, dead-column fix,
    dampening (percdamp * mean diag after the fix), Hinv = upper Cholesky of H^-1. Returns (W, Hinv, dead)."""
    W = W.to(dtype).clone()
    H = H.to(dtype).clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    d = damp * torch.mean(torch.diag(H))
    idx = torch.arange(H.shape[0])
    H[idx, idx] += d
    L = torch.linalg.cholesky(H)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    return W, Hinv, dead


# ---------------------------------------------------------------- PB-LLM per linear ----
def high_calibrate(W, bits):
    """high_quant.py HighQuantizer(bits, perchannel=True, sym=False, mse=False).calibrate(W, weight=True)."""
    maxq = 2 ** bits - 1
    z = torch.zeros(W.shape[0], dtype=W.dtype)
    xmin = torch.minimum(W.min(1)[0], z)
    xmax = torch.maximum(W.max(1)[0], z)
    both = (xmin == 0) & (xmax == 0)
    xmin[both] = -1
    xmax[both] = +1
    scale = (xmax - xmin) / maxq
    zero = torch.round(-xmin / scale)
    return scale, zero, maxq


def high_quantize(x, scale, zero, maxq):
    """GPTQ quant.py quantize(): scale * (clamp(round(x / scale) + zero, 0, maxq) - zero); x is one column."""
    q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
    return scale * (q - zero)


def pbllm_quantize(W, H, low_frac, high_bit=8, group=128, metric="hessian", damp=0.01, block=128,
                   force_mask=None, dtype=F32, fp16_binpar=False):
    """Steps 1-5 on one linear (gptq.py LowHighGPT.fasterquant). force_mask (rows x cols, 1 = salient) replaces
    step 3's decision (steps 4-5 then use it). fp16_binpar: mu and alpha rounded to fp16 after step 4, as lowbit
    stores them (its dump's meta.json says "binpar": "fp16"; upstream keeps them in float32 and rounds the final
    weights to fp16 instead). Returns (Q float32, salient mask uint8, info dict)."""
    if not 0 < low_frac < 1:
        raise ValueError("low_frac must be in (0, 1)")
    W0 = W.to(dtype)
    rows, cols = W0.shape
    hs, hz, hmaxq = high_calibrate(W0, high_bit)  # on the original W, before the dead fix (gptq.py order)
    W, Hinv, dead = gptq_prepare(W0, H, damp, dtype)
    gs = cols if group == -1 else group
    if gs % block:
        raise ValueError(f"groupsize {gs} must be a multiple of blocksize {block} (gptq.py asserts it)")
    n_groups = math.ceil(cols / gs)
    binar = torch.zeros(rows, cols, dtype=torch.bool)
    mu = torch.zeros(n_groups, rows, dtype=dtype)
    alpha = torch.zeros(n_groups, rows, dtype=dtype)
    for g in range(n_groups):
        st, ed = g * gs, min(g * gs + gs, cols)
        if force_mask is not None:
            binar[:, st:ed] = torch.as_tensor(np.asarray(force_mask))[:, st:ed] == 0
        else:
            if metric == "magnitude":
                s = torch.abs(W[:, st:ed])
            elif metric == "hessian":
                s = W[:, st:ed] ** 2 / (torch.diag(Hinv[st:ed, st:ed]).reshape((1, -1))) ** 2
            else:
                raise ValueError(metric)
            thr = torch.sort(s.flatten())[0][int(s.numel() * low_frac)]
            binar[:, st:ed] = s <= thr
        # low_quant.py LowQuantizer.calibrate('xnor') on W * mask: means over ALL group columns (quirk)
        wm = W[:, st:ed] * binar[:, st:ed]
        m = wm.mean(-1).view(-1, 1)
        mu[g] = m.flatten()
        alpha[g] = (wm - m).abs().mean(-1)
        if fp16_binpar:
            mu[g] = mu[g].half().to(dtype)
            alpha[g] = alpha[g].half().to(dtype)
    for c0 in range(0, cols, block):
        c1 = min(c0 + block, cols)
        g = c0 // gs
        W1 = W[:, c0:c1].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[c0:c1, c0:c1]
        b1 = binar[:, c0:c1]
        for i in range(c1 - c0):
            w = W1[:, i]
            d = Hinv1[i, i]
            q_high = high_quantize(w, hs, hz, hmaxq)
            q_low = torch.sign(w - mu[g]) * alpha[g] + mu[g]  # low_quant.py quantize('xnor')
            q = q_high * ~b1[:, i] + q_low * b1[:, i]
            Q1[:, i] = q
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err
        W[:, c0:c1] = Q1
        W[:, c1:] -= Err1.matmul(Hinv[c0:c1, c1:])
    sal = (~binar).to(torch.uint8)
    info = {"salient": int(sal.sum()), "numel": rows * cols, "dead": int(dead.sum())}
    return W.to(F32), sal, info


# ---------------------------------------------------------------- generic harness ----
def recon_err(Q, W, H):
    """e = tr((Q - W) H (Q - W)^T) / tr(W H W^T) in float64 with the dumped (undamped) H."""
    W = torch.as_tensor(W).double()
    H = torch.as_tensor(H).double()
    E = torch.as_tensor(Q).double() - W
    return float(((E @ H) * E).sum() / ((W @ H) * W).sum())


def linear_sort_key(name):
    import ref_quant_model
    layer, _, lin = name.partition(".")
    try:
        return (int(layer), ref_quant_model.LINEARS.index(lin), name)
    except ValueError:
        return (1 << 30, 0, name)


class PBLLM:
    """Method adaptor used by the harness (tools/ref_billm.py defines the BiLLM one)."""
    name = "pbllm"
    script = "tools/ref_pbllm.py"

    @staticmethod
    def add_options(p, synthetic=False):
        p.add_argument("--low-frac", type=float, default=0.9, help="fraction binarized (upstream --low_frac)")
        p.add_argument("--high-bit", type=int, default=8)
        p.add_argument("--group", type=int, default=128, help="column group of the masks/xnor (-1: whole row)")
        p.add_argument("--salient-metric", choices=["hessian", "magnitude"], default="hessian")
        p.add_argument("--damp", type=float, default=0.01, help="percdamp (fraction of mean diag H)")
        p.add_argument("--block", type=int, default=128, help="GPTQ blocksize")

    @staticmethod
    def meta_from_args(a):
        return {"method": "pbllm", "low_frac": a.low_frac, "high_bit": a.high_bit, "group": a.group,
                "salient_metric": a.salient_metric, "damp": a.damp, "block": a.block}

    @staticmethod
    def label(m):
        return (f"pbllm low_frac {m['low_frac']} h{m['high_bit']} g{m['group']} {m['salient_metric']} "
                f"damp{m['damp']}")

    @staticmethod
    def quantize(W, H, m, force_mask=None, dtype=F32):
        return pbllm_quantize(torch.as_tensor(W), torch.as_tensor(H), float(m["low_frac"]),
                              int(m.get("high_bit", 8)), int(m.get("group", 128)),
                              m.get("salient_metric", "hessian"), float(m.get("damp", 0.01)),
                              int(m.get("block", 128)), force_mask, dtype, m.get("binpar") == "fp16")

    @staticmethod
    def check_mask(mask, m):
        """Mask sanity: values, and per-group binarized counts below the upstream minimum int(numel*low_frac)+1."""
        bad = int((mask > 1).sum())
        rows, cols = mask.shape
        gs = cols if int(m.get("group", 128)) == -1 else int(m.get("group", 128))
        short = 0
        for st in range(0, cols, gs):
            g = mask[:, st:st + gs]
            if int((g == 0).sum()) < int(g.size * float(m["low_frac"])) + 1:
                short += 1
        return {"bad_values": bad, "groups_short_of_binarized": short}

    @staticmethod
    def corrupt(mask, W, H, m, k, rng):
        """Flip the k salient entries of largest |W| to binarized."""
        mask = mask.copy()
        idx = np.flatnonzero(mask.ravel() == 1)
        top = idx[np.argsort(-np.abs(np.asarray(W).ravel()[idx]), kind="stable")[:k]]
        mask.ravel()[top] = 0
        return mask

    @staticmethod
    def bits(stats, m):
        sal = sum(s["salient"] for s in stats.values())
        tot = sum(s["numel"] for s in stats.values())
        r = sal / tot
        hb = int(m["high_bit"])
        rn = 1 - float(m["low_frac"])
        return (f"bits (paper: (1-r)*1 + r*{hb}, scales/bitmap not counted): r = {r:.5f} salient -> "
                f"{(1 - r) + r * hb:.4f} bits/weight (nominal r = 1 - low_frac = {rn:.4f} -> "
                f"{(1 - rn) + rn * hb:.4f})"), {"salient_frac": r, "bits": (1 - r) + r * hb}


def compare_linear(dirpath, method, a):
    meta = json.load(open(os.path.join(dirpath, "meta.json")))
    if meta.get("method") != method.name:
        raise SystemExit(f"{dirpath}: meta method {meta.get('method')!r}, this is {method.script}")
    ld = lambda fn: np.load(os.path.join(dirpath, fn + ".npy"))  # noqa: E731
    W, H, Q, mask = ld("W"), ld("H"), ld("Q"), ld("mask")
    r = {"shape": list(W.shape), "meta": meta, "problems": []}
    if H.shape != (W.shape[1], W.shape[1]) or Q.shape != W.shape or mask.shape != W.shape:
        r["problems"].append(f"shapes W {W.shape} H {H.shape} Q {Q.shape} mask {mask.shape}")
        return r
    if not np.isfinite(Q).all():
        r["problems"].append(f"{int((~np.isfinite(Q)).sum())} non-finite Q entries")
    dtype = torch.float64 if getattr(a, "float64", False) else F32
    t0 = time.time()
    Qr, mr, info = method.quantize(W, H, meta, dtype=dtype)
    r["seconds"] = time.time() - t0
    mr = mr.numpy()
    # The reference's own mask (uint8, row-major), hashed: tests/quant/methods/*_ref.json fixtures compare it.
    r["ref_mask_sha256"] = hashlib.sha256(np.ascontiguousarray(mr.astype(np.uint8)).tobytes()).hexdigest()
    diff = mr != mask
    r["mask_differ"] = int(diff.sum())
    r["mask_rows_differ"] = int(diff.any(1).sum())
    r["mask_check"] = method.check_mask(mask, meta)
    r["info_ref"] = info
    r["max_abs_dq"] = float(np.abs(Q.astype(np.float64) - Qr.double().numpy()).max())
    r["e_lowbit"] = recon_err(Q, W, H)
    r["e_ref"] = recon_err(Qr, W, H)
    r["e_rel_diff"] = abs(r["e_lowbit"] / r["e_ref"] - 1) if r["e_ref"] > 0 else float(r["e_lowbit"] != 0)
    if r["mask_differ"]:
        cols = np.flatnonzero(diff.any(0))
        r["first_diff_col"] = int(cols.min())
        Qg, _, _ = method.quantize(W, H, meta, force_mask=mask, dtype=dtype)
        r["given_mask_max_abs_dq"] = float(np.abs(Q.astype(np.float64) - Qg.double().numpy()).max())
        r["given_mask_e_ref"] = recon_err(Qg, W, H)
    return r


def run_layers(a, method):
    if a.make_synthetic:
        make_synthetic(a.make_synthetic, method, a, a.seed, a.corrupt)
        a.dumpdir = a.dumpdir or a.make_synthetic
    if not a.dumpdir:
        raise SystemExit("layers: DUMPDIR or --make-synthetic DIR")
    names = sorted((x for x in os.listdir(a.dumpdir) if os.path.exists(os.path.join(a.dumpdir, x, "meta.json"))),
                   key=linear_sort_key)
    if not names:
        raise SystemExit(f"{a.dumpdir}: no <linear>/meta.json")
    out, bad, warn = {}, 0, 0
    for name in names:
        r = compare_linear(os.path.join(a.dumpdir, name), method, a)
        out[name] = r
        if r["problems"] and "mask_differ" not in r:
            print(f"{name:<22} PROBLEM: {'; '.join(r['problems'])}", flush=True)
            bad += 1
            continue
        extra = ""
        if r["mask_differ"]:
            extra = (f" first col {r['first_diff_col']} | given lowbit's mask: max|dQ| "
                     f"{r['given_mask_max_abs_dq']:.3g} e_ref {r['given_mask_e_ref']:.6f}")
        mc = ",".join(f"{k} {v}" for k, v in r["mask_check"].items() if v)
        failed = bool(r["problems"]) or (r["mask_differ"] > 0 and r["e_rel_diff"] > a.tol)
        warned = r["mask_differ"] == 0 and r["e_rel_diff"] > a.tol
        print(f"{name:<22} {r['shape'][0]}x{r['shape'][1]} | mask differ {r['mask_differ']}/"
              f"{r['shape'][0] * r['shape'][1]} rows {r['mask_rows_differ']} | max|Q-Qref| {r['max_abs_dq']:.3g}"
              f" | e lowbit {r['e_lowbit']:.6f} ref {r['e_ref']:.6f} rel {r['e_rel_diff']:.2e}{extra}"
              f"{' | mask check: ' + mc if mc else ''}{' | ' + '; '.join(r['problems']) if r['problems'] else ''}"
              f" | {r['seconds']:.1f} s{'  FAIL' if failed else ''}"
              f"{'  WARNING: masks agree, e differs' if warned else ''}", flush=True)
        bad += failed or (warned and a.strict_error)
        warn += warned
    ndiff = sum(1 for r in out.values() if r.get("mask_differ"))
    print(f"{len(names)} linears, {ndiff} with differing masks, {bad} failing (masks differ and |e_lowbit/e_ref-1|"
          f" > {a.tol}){f', {warn} warnings' if warn else ''}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            extra = method.json_extra() if hasattr(method, "json_extra") else {}
            json.dump(dict({"generator": f"{method.script} layers", "dumpdir": os.path.abspath(a.dumpdir),
                            "tol": a.tol, "linears": out}, **extra), f, indent=1)
            f.write("\n")
    return 1 if bad and a.strict else 0


def synthetic_case(rng, m, n, dead):
    """(W f32 m x n, H f32 n x n): H = 2/N X^T X of correlated anisotropic X with 3 outlier channels."""
    N = 4 * n
    X = rng.standard_normal((N, n)) @ (rng.standard_normal((n, n)) / math.sqrt(n) + np.eye(n))
    X *= np.exp(0.5 * rng.standard_normal(n))[None, :]
    X[:, rng.choice(n, 3, replace=False)] *= 20.0
    if dead:
        X[:, rng.integers(n)] = 0.0
    H = (2.0 / N * (X.T @ X)).astype(np.float32)
    W = (rng.standard_normal((m, n)) * 0.05 * np.exp(0.5 * rng.standard_normal(m))[:, None]).astype(np.float32)
    W.ravel()[rng.choice(W.size, W.size // 200, replace=False)] *= 8.0  # a few outlier weights
    return W, H


def make_synthetic(out, method, a, seed=0, corrupt=0):
    rng = np.random.default_rng(seed)
    cases = [("0.self_attn.q_proj", 192, 256, False), ("0.mlp.down_proj", 128, 384, True),
             ("1.self_attn.k_proj", 64, 256, False)]
    meta = method.meta_from_args(a)
    os.makedirs(out, exist_ok=True)
    for k, (name, m, n, dead) in enumerate(cases):
        W, H = synthetic_case(rng, m, n, dead)
        Q, mask, _ = method.quantize(W, H, meta)
        mask = mask.numpy()
        if corrupt and k == 0:
            mask = method.corrupt(mask, W, H, meta, corrupt, rng)
            Q, _, _ = method.quantize(W, H, meta, force_mask=mask)
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        for fn, arr in (("W", W), ("H", H), ("Q", Q.numpy().astype(np.float32)), ("mask", mask.astype(np.uint8))):
            np.save(os.path.join(d, fn + ".npy"), arr)
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump(meta, f)
    extra = getattr(method, "synthetic_extra", None)
    if extra:
        extra(rng)
    print(f"wrote synthetic dump of {len(cases)} linears to {out}{f' (corrupted {corrupt})' if corrupt else ''}",
          flush=True)


# ---------------------------------------------------------------- model mode ----
@torch.no_grad()
def quantize_model(model, a, method):
    """ref_quant_model.quantize_model's sequential pipeline (upstream run.py quant_sequential: hooks collect H over
    all calibration windows for the layer's linears, each linear is quantized, the layer's outputs are recomputed
    with the quantized weights; --true-sequential groups q,k,v / o / gate,up / down)."""
    import ref_quant_model
    meta = method.meta_from_args(a)
    L = model.cfg["num_hidden_layers"]
    w = dict(model.w)
    calib = np.load(os.path.join(a.tokens, "calib.npy"))
    tables = model.rope_tables(calib.shape[1])
    emb = model.w["model.embed_tokens.weight"]
    xs = [emb[model.ids(row)] for row in calib]
    stats = {}
    for l in range(L):
        t0 = time.time()
        for group in ref_quant_model.SEQUENTIAL if a.true_sequential else [ref_quant_model.LINEARS]:
            hs = ref_quant_model.Hessians(group)
            for x in xs:
                model.block(l, x, tables, w=w, hook=hs)
            for name in group:
                key = f"model.layers.{l}.{name}.weight"
                W = w[key].float()
                H = hs.H[name].float()  # upstream accumulates H in float32; the method gets float32
                Q, mask, info = method.quantize(W, H, meta)
                info["e"] = recon_err(Q, W, H)
                stats[f"{l}.{name}"] = info
                if a.verbose:
                    ref_quant_model.print_rel_err(l, name, W, Q)
                    print(f"  {l} {name:<18} e {info['e']:.6f}", file=sys.stderr)
                w[key] = Q.to(w[key].dtype)
        xs = [model.block(l, x, tables, w=w) for x in xs]
        print(f"  layer {l}: {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    return w, stats


def run_model(a, method):
    import ref_quant_model
    import ref_score
    model = ref_score.Llama(a.model)
    meta = method.meta_from_args(a)
    t0 = time.time()
    w, stats = quantize_model(model, a, method)
    tq = time.time() - t0
    label = method.label(meta) + (" true-seq" if a.true_sequential else "")
    print(f"ref {label}: quantized in {tq:.0f} s", flush=True)
    bline, bnum = method.bits(stats, meta)
    print(f"ref {label}: {bline}", flush=True)
    out, times = {}, {}
    for ds in a.eval.split(","):
        t1 = time.time()
        ids = np.load(os.path.join(a.tokens, ds + ".npy"))
        ppl, nw = ref_quant_model.perplexity(model, w, ids, a.seqlen, a.max_windows)
        times[ds] = time.time() - t1
        print(f"ref {label}: {ds} ppl {ppl:.4f} ({nw} windows, {times[ds]:.0f} s)", flush=True)
        out[ds] = ppl
    if a.json:
        calib = np.load(os.path.join(a.tokens, "calib.npy"))
        settings = dict(meta, generator=f"{method.script} model", model=a.model, true_sequential=a.true_sequential,
                        nsamples=int(calib.shape[0]), calib_seqlen=int(calib.shape[1]), seqlen=a.seqlen,
                        max_windows=a.max_windows, quantize_seconds=tq, eval_seconds=times)
        with open(a.json, "w") as f:
            json.dump({"settings": settings, "ppl": out, "bits": bnum, "linears": stats}, f, indent=1)
            f.write("\n")
    return 0


def main(method, doc):
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    sub = ap.add_subparsers(dest="mode", required=True)
    la = sub.add_parser("layers", help="compare lowbit's per-linear dump")
    la.add_argument("dumpdir", nargs="?")
    la.add_argument("--json", default="")
    la.add_argument("--make-synthetic", default="", metavar="DIR", help="write a synthetic dump to DIR, compare it")
    la.add_argument("--seed", type=int, default=0, help="(synthetic)")
    la.add_argument("--corrupt", type=int, default=0, help="(synthetic) corrupt this many mask entries of linear 0")
    la.add_argument("--strict", action="store_true",
                    help="exit 1 when a linear's masks differ and its e differs by more than --tol")
    la.add_argument("--strict-error", action="store_true",
                    help="with --strict, also fail linears whose masks agree but whose e differs by > --tol")
    la.add_argument("--tol", type=float, default=0.001, help="relative tolerance on e (0.001 = 0.1%%)")
    la.add_argument("--float64", action="store_true", help="run the reference in float64 (diagnostic)")
    method.add_options(la.add_argument_group("synthetic dump options (a real dump's meta.json wins)"))
    mo = sub.add_parser("model", help="whole-model quantization + perplexity")
    mo.add_argument("--model", required=True)
    mo.add_argument("--tokens", required=True, help="directory written by quant_eval --dump-tokens")
    method.add_options(mo)
    mo.add_argument("--true-sequential", action="store_true")
    mo.add_argument("--eval", default="wikitext2")
    mo.add_argument("--seqlen", type=int, default=2048)
    mo.add_argument("--max-windows", type=int, default=0)
    mo.add_argument("--verbose", action="store_true", help="print each linear's relative error and e")
    mo.add_argument("--json", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sys.exit(run_layers(a, method) if a.mode == "layers" else run_model(a, method))


if __name__ == "__main__":
    main(PBLLM, __doc__)
