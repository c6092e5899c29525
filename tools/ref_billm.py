#!/usr/bin/env python3
"""Independent PyTorch reference for lowbit's BiLLM (Huang et al. 2024, "BiLLM: Pushing the Limit of Post-Training
Quantization for LLMs"), for comparison with the C++ implementation.

It ports the authors' code (github Aaronhuang-778/BiLLM: run.py, bigptq.py BRAGPTQ.fasterquant, binary.py
high_order_residual / Binarization('braq'), utils/structure.py structural_guassian_distribution,
utils/autosearch.py structural_searching / error_computing, utils/mask.py generate_structural_mask), written from
reading it, for the README's run
    run.py <model> c4 braq --blocksize 128 --salient_metric hessian       (groupsize = blocksize in run.py)
All arithmetic is float32 like upstream (torch, CPU); H is taken as given (float32, H = 2/N sum x x^T, BEFORE the
dead-column fix and dampening).
Per linear W (rows = out features, cols = in features):
  1. GPTQ's H fix, as in tools/ref_pbllm.py gptq_prepare: dead = diag H == 0 -> H[dead,dead] = 1, W[:,dead] = 0;
     H += percdamp * mean(diag H) I; Hinv = upper Cholesky factor of H^-1.
  2. For each block of `blocksize` (128) columns [st, ed), in order, on the CURRENT W (earlier blocks'
     compensation applied), Hb = diag(Hinv[st:ed, st:ed]):
     a. salience T = W_blk^2 / Hb^2 (hessian; float32 (W**2) / (Hb**2)), or T = W_blk itself, SIGNED (magnitude;
        upstream quirk: structural_guassian_distribution passes tmp, not |tmp|).
     b. column scores c_j = sum_rows |T_ij|; order = columns by descending c (upstream torch.topk(c, 50); its tie
        order is unspecified, here ties go to the lower column index). For k = 1..49 (up_lim = 50, range(1, 50)):
        S_k = the first k columns of order; err_k = mean((T - (R2(T, ~S_k) + R2(T, S_k)))^2) over all rows x
        block entries (error_computing); k* = the first k with the smallest err (strict <). mask3 = columns S_k*.
        NOTE the search binarizes the salience matrix T, not W (upstream quirk, kept).
     c. split of the non-salient entries: a = |T * ~mask3| flattened row-major INCLUDING the zeros of the salient
        columns, n = rows * blocksize entries, A = sorted a; 81 candidates p_i = np.quantile(a, q_i) (numpy's
        default 'linear' method) with q = torch.linspace(0.10, 0.90, 81) in float32 (bit patterns in --json).
        Upstream pins numpy==1.24.3; its value-based casting makes the virtual index v = (n - 1) * q_i
        ((n - 1) a Python int) float32 when n - 1 <= 65535 (uint16; rows <= 512 at blocksize 128): v = f32(n-1)
        * q_i rounded to float32, and float64 when n - 1 >= 65536 (uint32): v = (n-1) * f64(q_i). Then, in
        both regimes: lo = floor(v), g = v - lo (exact), d = A[lo+1] - A[lo] (a float32 subtraction),
        p = A[lo+1] - d * (1 - g) if g >= 0.5 else A[lo] + d * g computed in FLOAT64 (g comes out float64
        because lo is an integer array), and v >= n - 1 gives A[n-1].
        p is compared with the float32 |T| as float32 (torch computes the comparison in the float32 operand's
        type), i.e. against float32(p). On the testbed, blocks of 128/384-row linears take the float32-v path
        and the 1024-row gate/up blocks the float64 one. (numpy >= 2 differs: v always float32.)
        quantiles_np124 below writes this out; the synthetic self-check checks it against np.quantile.
        For each p_i in order: mask2 = |T*~mask3| >= p & ~mask3, mask1 = |T*~mask3| < p & ~mask3
        (generate_structural_mask); err = mean((T - ((R1(T, mask1) + R1(T, mask2)) + R2(T, mask3)))^2),
        R2(T, mask3) computed once; p* = the first p with the smallest err (strict <). Final mask1/mask2 from p*
        (exact zeros among the non-salient entries, e.g. dead columns, go to mask1 unless p* == 0).
     d. quantize the block W1 = W[:, st:ed] (snapshot at block start): Q1 = R1(W1, mask1) + R1(W1, mask2) +
        R2(W1, mask3)  (orders (1, 1, 2); the masks partition the block, each R is 0 outside its mask).
        With "binpar": "fp16" in the dump's meta.json (lowbit's storage), binarize_stored replaces R here.
     e. compensation ONLY to later blocks: Err1 = (W1 - Q1) / Hb (per column), W[:, ed:] -= Err1 Hinv[st:ed, ed:];
        no update inside the block (bigptq.py never touches W1 in its column loop, unlike GPTQ).
  R_o(x, mask) (binary.py high_order_residual): per row, over the masked entries only; s = 0; o times:
     r = x*mask - s; mu = nanmean(r over mask) (0 for an empty row); alpha = nanmean(|r - mu| over mask) (0 if
     empty); b = sign(r - mu) * alpha + mu with sign(0) = 0 (an entry equal to mu gets mu); s += b * mask.
     (Upstream puts NaN outside the mask; torch.sign(NaN) = 0 there, so b*mask is 0 outside the mask.)
  Bits (paper's accounting; group bitmap and per-row (alpha, mu) not counted): 1 + fraction of salient columns
  (mask3 carries a second binary plane), printed as the mean over linears and parameter-weighted.

Modes: as tools/ref_pbllm.py (same harness, imported from it):
  ref_billm.py layers DUMPDIR [--json OUT] [--strict] [--tol 0.001] [--float64]
      DUMPDIR/<layer>.<name>/: W.npy, H.npy, Q.npy as for PB-LLM; mask.npy (uint8): 0 = non-salient entry with
      |T| < p* ("mask1"), 1 = non-salient entry with |T| >= p* ("mask2"), 2 = salient column (order-2 residual,
      "mask3"); meta.json {"method":"billm","damp":0.01,"block":128,"salient_metric":"hessian"}. Prints differing
      mask entries (and rows), max |Q - Qref|, e = tr((Q-W) H (Q-W)^T)/tr(W H W^T) of both, their relative
      difference; when masks differ, also the reference with lowbit's masks forced in every block ("given mask").
      A lowbit mask whose salient entries are not whole block columns is reported (mask check "ragged_blocks").
      The json also lists the 81 float32 quantile levels q (as floats and as IEEE bit patterns).
  ref_billm.py layers --make-synthetic DIR [--seed S] [--corrupt K]
      synthetic self-check; --corrupt K moves, in the first linear, the K mask2 entries of largest |W| to mask1
      and recomputes Q with those masks forced: --strict must then exit 1. It also checks the explicit quantile
      formula of step 2c (quantiles_np124) against np.quantile in both precision regimes.
  ref_billm.py model --model ../shared/models/testbed-25m --tokens DIR [--salient-metric hessian|magnitude]
      [--damp 0.01] [--block 128] [--true-sequential] [--eval wikitext2] [--max-windows N] [--json OUT]
      whole-model BiLLM with ref_quant_model's sequential pipeline and perplexity (see ref_pbllm.py). The method is
      deterministic: decorrelated "draws" for a spread come from perturbing --damp (0.01 / 0.0107 / 0.0115).

    nice -n 19 /usr/bin/python3 tools/ref_billm.py model --model ../shared/models/testbed-25m --tokens /tmp/tok \\
        --max-windows 4
    nice -n 19 /usr/bin/python3 tools/ref_billm.py layers --make-synthetic /tmp/billm-synth --strict
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_pbllm  # noqa: E402  (the harness and gptq_prepare)

F32 = torch.float32
UP_LIM = 50  # bigptq.py passes 50 to structural_guassian_distribution
ORDERS = (1, 1, 2)


def quantile_levels():
    """torch.linspace(0.10, 0.90, 81) (float32), utils/autosearch.py structural_searching."""
    return torch.linspace(0.10, 0.90, 81)


def high_order_residual(x, mask, order):
    """binary.py high_order_residual, in x's dtype."""
    s = torch.zeros_like(x)
    new = x * mask
    nan = torch.tensor(float("nan"), dtype=x.dtype)
    for _ in range(order):
        r = torch.where(mask, new - s, nan)
        mu = torch.nanmean(r, dim=1)
        mu = torch.where(torch.isnan(mu), torch.zeros_like(mu), mu)
        r = r - mu[:, None]
        alpha = torch.nanmean(torch.abs(r), dim=1)
        alpha = torch.where(torch.isnan(alpha), torch.zeros_like(alpha), alpha)
        # upstream: sign(NaN) * alpha + mu outside the mask, then * mask -> 0; written without relying on sign(NaN)
        b = torch.sign(torch.where(mask, r, torch.zeros_like(r))) * alpha[:, None] + mu[:, None]
        s = s + b * mask
    return s


def binarize_stored(x, mask, order):
    """Step 2d as lowbit stores it (its dump's meta.json says "binpar": "fp16"): per row over the mask, mu and
    alpha (alpha from the unrounded mu, as upstream) rounded to fp16 before use, the sign of x - mu as a bit
    (x == mu gives +alpha: a bit cannot hold sign(0) = 0); order 2 binarizes the residual again, and the two
    means are stored as one fp16 sum: q = (half(mu1 + mu2) +- alpha1) +- alpha2."""
    def stats(v):
        cnt = mask.sum(dim=1)
        mu = torch.where(cnt > 0, (v * mask).sum(dim=1) / cnt.clamp(min=1), torch.zeros(()))
        al = torch.where(cnt > 0, (torch.abs(v - mu[:, None]) * mask).sum(dim=1) / cnt.clamp(min=1),
                         torch.zeros(()))
        return mu.half().to(x.dtype), al.half().to(x.dtype)
    mu1, a1 = stats(x)
    s1 = torch.where(x - mu1[:, None] >= 0, a1[:, None], -a1[:, None])
    q = mu1[:, None] + s1
    if order == 2:
        res = x - q
        mu2, a2 = stats(res)
        s2 = torch.where(res - mu2[:, None] >= 0, a2[:, None], -a2[:, None])
        q = ((mu1 + mu2).half().to(x.dtype)[:, None] + s1) + s2
    return q * mask


def mse(a, b):
    """utils/autosearch.py error_computing."""
    return torch.mean((a - b) ** 2)


def split_masks(T, mask3, p):
    """utils/mask.py generate_structural_mask."""
    nm = ~mask3
    bg = torch.abs(T * nm)
    return (bg < p) & nm, (bg >= p) & nm


def quantiles_np124(a, q):
    """Step 2c's quantiles written out: what numpy 1.24's np.quantile(a, q) returns (float64) for float32 data a
    and float32 q: virtual index in float32 if len(a) - 1 <= 65535, else float64; lerp in float64."""
    A = np.sort(np.asarray(a, np.float32))
    n = A.size
    out = np.empty(len(q), np.float64)
    for i, qi in enumerate(np.asarray(q, np.float32)):
        v = np.float32(np.float32(n - 1) * qi) if n - 1 <= 65535 else np.float64(n - 1) * np.float64(qi)
        if v >= n - 1:
            out[i] = A[n - 1]
            continue
        lo = int(np.floor(v))
        g = np.float64(v) - lo
        d = np.float64(np.float32(A[lo + 1] - A[lo]))
        out[i] = np.float64(A[lo + 1]) - d * (1.0 - g) if g >= 0.5 else np.float64(A[lo]) + d * g
    return out


def structural_search(T, up_lim=UP_LIM):
    """utils/autosearch.py structural_searching: returns (p*, mask3, k*, err of k*)."""
    rows, n = T.shape
    if n < up_lim:
        raise ValueError(f"block of {n} columns < up_lim {up_lim} (upstream torch.topk would fail)")
    counts = T.abs().sum(dim=0)
    order = torch.from_numpy(np.argsort(-counts.numpy(), kind="stable"))  # topk, ties to the lower index
    best0, kbest = float("inf"), None
    for k in range(1, up_lim):
        m3 = torch.zeros(rows, n, dtype=torch.bool)
        m3[:, order[:k]] = True
        g3 = high_order_residual(T, m3, 2)
        g4 = high_order_residual(T, ~m3, 2)
        e = mse(T, g4 + g3)
        if e < best0:
            best0, kbest = e, k
    mask3 = torch.zeros(rows, n, dtype=torch.bool)
    mask3[:, order[:kbest]] = True
    g3 = high_order_residual(T, mask3, 2)
    flat = torch.abs(T * ~mask3).reshape(-1)
    pv = torch.tensor(np.quantile(flat.numpy(), q=quantile_levels().numpy()))
    best, pbest = float("inf"), None
    for p in pv:
        m1, m2 = split_masks(T, mask3, p)
        e = mse(T, high_order_residual(T, m1, 1) + high_order_residual(T, m2, 1) + g3)
        if e < best:
            best, pbest = e, p
    return pbest, mask3, kbest, float(best0)


def billm_quantize(W, H, metric="hessian", damp=0.01, block=128, force_mask=None, dtype=F32, fp16_binpar=False):
    """Steps 1-2 on one linear (bigptq.py BRAGPTQ.fasterquant with braq). force_mask (rows x cols, codes 0/1/2)
    replaces steps 2a-2c in every block. Returns (Q float32, mask uint8 codes, info)."""
    W, Hinv, dead = ref_pbllm.gptq_prepare(torch.as_tensor(W), torch.as_tensor(H), damp, dtype)
    rows, cols = W.shape
    codes = torch.zeros(rows, cols, dtype=torch.uint8)
    ks, splits = [], []
    fm = None if force_mask is None else torch.as_tensor(np.asarray(force_mask))
    for st in range(0, cols, block):
        ed = min(st + block, cols)
        if fm is not None:
            f = fm[:, st:ed]
            m1, m2, m3 = f == 0, f == 1, f == 2
            ks.append(int(m3.all(0).sum()))
        else:
            hb = torch.diag(Hinv[st:ed, st:ed]).reshape((1, -1))
            if metric == "hessian":
                T = W[:, st:ed] ** 2 / hb ** 2
            elif metric == "magnitude":
                T = W[:, st:ed]
            else:
                raise ValueError(metric)
            p, m3, k, _ = structural_search(T)
            m1, m2 = split_masks(T, m3, p)
            ks.append(k)
            splits.append(float(p))
        W1 = W[:, st:ed].clone()
        Q1 = torch.zeros_like(W1)
        for m, o in zip((m1, m2, m3), ORDERS):
            Q1 += (binarize_stored(W1, m, o) if fp16_binpar else high_order_residual(W1, m, o)) * m
        Err1 = (W1 - Q1) / torch.diag(Hinv[st:ed, st:ed])[None, :]
        W[:, st:ed] = Q1
        W[:, ed:] -= Err1.matmul(Hinv[st:ed, ed:])
        codes[:, st:ed] = m2.to(torch.uint8) + 2 * m3.to(torch.uint8)
    info = {"salient_cols": int(sum(ks)), "cols": cols, "rows": rows, "numel": rows * cols,
            "salient_cols_per_block": ks, "splits": splits, "dead": int(dead.sum())}
    return W.to(F32), codes, info


class BiLLM:
    name = "billm"
    script = "tools/ref_billm.py"

    @staticmethod
    def add_options(p, synthetic=False):
        p.add_argument("--salient-metric", choices=["hessian", "magnitude"], default="hessian")
        p.add_argument("--damp", type=float, default=0.01, help="percdamp (fraction of mean diag H)")
        p.add_argument("--block", type=int, default=128, help="blocksize (= groupsize upstream)")
        p.add_argument("--binpar", choices=["f32", "fp16"], default="f32",
                       help="model mode: fp16 = round the binarization parameters as lowbit stores them "
                            "(binarize_stored), to check the pipeline against lowbit run for run")

    @staticmethod
    def meta_from_args(a):
        m = {"method": "billm", "damp": a.damp, "block": a.block, "salient_metric": a.salient_metric}
        if getattr(a, "binpar", "f32") == "fp16":
            m["binpar"] = "fp16"
        return m

    @staticmethod
    def label(m):
        return f"billm b{m['block']} {m['salient_metric']} damp{m['damp']}"

    @staticmethod
    def quantize(W, H, m, force_mask=None, dtype=F32):
        return billm_quantize(W, H, m.get("salient_metric", "hessian"), float(m.get("damp", 0.01)),
                              int(m.get("block", 128)), force_mask, dtype, m.get("binpar") == "fp16")

    @staticmethod
    def check_mask(mask, m):
        bad = int((mask > 2).sum())
        blk = int(m.get("block", 128))
        ragged = 0
        for st in range(0, mask.shape[1], blk):
            s = mask[:, st:st + blk] == 2
            ragged += int((s.any(0) != s.all(0)).any())
        return {"bad_values": bad, "ragged_blocks": ragged}

    @staticmethod
    def corrupt(mask, W, H, m, k, rng):
        """Move the k mask2 entries of largest |W| to mask1."""
        mask = mask.copy()
        idx = np.flatnonzero(mask.ravel() == 1)
        top = idx[np.argsort(-np.abs(np.asarray(W).ravel()[idx]), kind="stable")[:k]]
        mask.ravel()[top] = 0
        return mask

    @staticmethod
    def bits(stats, m):
        fr = [s["salient_cols"] / s["cols"] for s in stats.values()]
        mean = sum(fr) / len(fr)
        wsum = sum(s["salient_cols"] * s["rows"] for s in stats.values()) / sum(s["numel"] for s in stats.values())
        return (f"bits (paper: 1 + salient-column fraction; bitmap/scales not counted): {1 + mean:.4f} "
                f"bits/weight (mean over {len(fr)} linears; parameter-weighted {1 + wsum:.4f})"), \
            {"salient_col_frac_mean": mean, "bits": 1 + mean, "bits_weighted": 1 + wsum}

    @staticmethod
    def json_extra():
        """The 81 float32 quantile levels of step 2c, which the C++ must reproduce bit for bit."""
        q = quantile_levels().numpy()
        return {"quantile_levels_f32": [float(x) for x in q],
                "quantile_levels_f32_bits": [f"0x{int(x):08x}" for x in q.view(np.uint32)]}

    @staticmethod
    def synthetic_extra(rng):
        """Checks quantiles_np124 against np.quantile (float32 data, float32 q) in both precision regimes."""
        q = quantile_levels().numpy()
        worst = 0
        for n in (64 * 128, 128 * 128, 384 * 128, 512 * 128, 512 * 128 + 1, 1024 * 128):
            a = np.abs(rng.standard_normal(n).astype(np.float32)) ** 2
            a[: n // 10] = 0
            ref, mine = np.quantile(a, q), quantiles_np124(a, q)
            worst += int(ref.dtype != mine.dtype) + int((ref != mine).sum())
        print(f"step 2c quantile formula vs np.quantile (numpy {np.__version__}): {worst} mismatches", flush=True)
        if worst:
            raise SystemExit("step 2c's explicit quantile formula disagrees with np.quantile")

if __name__ == "__main__":
    ref_pbllm.main(BiLLM, __doc__)
