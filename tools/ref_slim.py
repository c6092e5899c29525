#!/usr/bin/env python3
"""Independent PyTorch reference for lowbit's SliM-LLM (Huang et al. 2024, "SliM-LLM: Salience-Driven Mixed-Precision
Quantization for Large Language Models", arXiv 2405.14917), GPTQ backbone, for comparison with the C++ implementation.

It ports the authors' `slim-llm/` code (github Aaronhuang-778/SliM-LLM at 90070b13: run.py quant_sequential,
slim_gptq.py SliMGPTQ.add_batch / get_salience / get_block / fasterquant, utils/bitsearch.py activation_aware_search /
block_quantize / binary, utils/reconstruct.py kl_div, utils/mixed_quantizer.py Quantizer.fit / quantize / binary /
binary_scale, utils/salient_mask.py saliency_mask / generate_mask), written from reading it, for scripts/llama-3.sh
    run.py meta-llama/Meta-Llama-3-8B wikitext2 {2bit|3bit} --groupsize 128
(defaults: nsamples 128, seqlen 2048, percdamp 0.01, lambda_salience 1, Quantizer norm 2.4, no precomputed
allocation file, salient_block = nonsalient_block = -1, i.e. the "Salience-Determined Bit Allocation" search runs).
All arithmetic is float32 (torch, CPU); see "dtype" below for where upstream differs. b = --wbits (2 or 3; upstream
accepts 2..8), group = 128 columns (upstream uses args.groupsize as the salience group, the bit-allocation group,
the quantizer group AND the GPTQ lazy-batch blocksize), G = ceil(cols / group) groups per linear.

Per linear W (rows = out features, cols = in features), H = (2/S) sum over all calibration tokens of x x^T where S is
the number of calibration SEQUENCES (SliMGPTQ.add_batch counts batch rows, one 2048-token sequence per call; this is
GPTQ's convention and ref_quant_model.Hessians'). H's scale matters here (absolute damping, dead-diagonal value),
see "H scale" below. X = the linear's calibration inputs (S sequences x T tokens x cols).
  1. get_salience (run.py calls it for every linear of the layer before the search). Quirk: it modifies SliMGPTQ.H
     IN PLACE (`h = self.H`, no clone): dead = diag H == 0 -> H[dead,dead] = 1; then H += 0.01 I (ABSOLUTE 0.01,
     not percdamp-relative). Hinv_s = upper Cholesky of (that H)^-1 (cholesky, cholesky_inverse, cholesky upper).
     W is the layer's weight as is (dead columns NOT zeroed). S_search[g] = float(sum over rows x group columns of
     W^2 / diag(Hinv_s)[cols of g]^2) (torch.sum in float32, .item()).
  2. SBA search (get_block -> activation_aware_search), only when G >= 4: for i = 1 .. G//2 - 1 (range(1, G//2);
     G//2 = max_round): order = argsort(S_search) ascending (numpy; ties -> lower index, see quirks); label 0 for the
     i lowest-S groups, label 2 for the i highest, label 1 otherwise; bits b-1 / b+1 / b. Wq_i = W quantized group by
     group with block_quantize (NO GPTQ, NO scale search, always asymmetric):
       bits >= 2: per output row of the group, xmin = min(min_j w, 0), xmax = max(max_j w, 0), rows with
                  xmin == xmax == 0 get (-1, +1); scale = (xmax - xmin)/maxq, maxq = 2^bits - 1,
                  zero = round(-xmin/scale); q(w) = scale * (clamp(round(w/scale) + zero, 0, maxq) - zero)
                  (round = half to even);
       bits == 1: utils/bitsearch.py binary: per row m = mean_j w, a = mean_j |w| (NOT mean |w - m|: quirk);
                  q(w) = sign(w - m) * a + m (sign(0) = 0);
       bits <= 0 or >= 10: the group is returned unquantized (block_quantize's "prune"/unknown method; unreachable
                  for b in 2..8).
     error_i(sample s) = utils/reconstruct.py kl_div(X_s Wq_i^T, Y_s) with Y_s = the linear's true output (upstream:
     the forward hook's `out`, i.e. X_s W^T; recomputed here as X_s W^T in float32, W as dumped):
       P = softmax(X_s Wq_i^T, dim=-1), R = softmax(Y_s, dim=-1)  (softmax over the OUTPUT CHANNELS, per token);
       P, R clamped to >= 1e-6 (not renormalised); F.kl_div(log R, P, reduction='batchmean')
       = sum over tokens and channels of P (log P - log R), i.e. KL(P_quant || R_fp), divided by input.size(0),
       which is 1 because upstream's `out` keeps its (1, T, rows) batch dimension (only `inp` is reshaped to 2-D;
       torch broadcasts the (T, rows) target): so 'batchmean' is a plain SUM over the T tokens of the sample.
     The per-sample errors are averaged over the S samples (fasterquant: zip(*block_errors), np.mean, float64):
     err_i = mean_s error_i(s). i* = the FIRST index of the minimum (average_error.index(min(...)) + 1).
     Here each sample's sum is accumulated in float64 from float32 terms (upstream: a float32 torch reduction).
     G < 4 (e.g. the testbed's 384-column linears, G = 3): range(1, G//2) is empty, the error lists are empty and
     upstream's fasterquant CRASHES (min() of an empty sequence). Decision (meta "small_g"): "uniform" (default)
     = i* = 0, every group gets b bits, everything else unchanged (the in-place H change of step 1 still applies);
     "error" = raise like upstream.
  3. fasterquant with the H modified by step 1: dead = diag H == 0 is now EMPTY (quirk: W's dead columns are never
     zeroed on this path); H += percdamp * mean(diag H) I (the mean includes the +0.01 of step 1); Hinv = upper
     Cholesky of H^-1. S_final[g] = float(sum W^2 / diag(Hinv)[g]^2) with W = the float32 weight (dead columns not
     zeroed). Allocation: order = argsort(S_final) ascending, the i* lowest get label 0 (b-1 bits), the i* highest
     label 2 (b+1 bits), the rest label 1 (b). Quirk: the search ranked groups by S_search (absolute damp only), the
     final allocation by S_final (absolute + relative damp); they can rank groups differently (info
     "order_mismatch"). The average is exactly b bits when all groups have `group` columns.
  4. GPTQ without act-order, lazy batches = the groups, in order; per group g = [st, ed) with bits B:
     a. sym flag (Quantizer(..., sym=True) default, run.py does not pass sym; one Quantizer per linear): label 1/2
        groups set quantizer.sym = False before fitting, label 0 groups leave it unchanged. So label-0 groups BEFORE
        the first label-1/2 group are fitted with sym = True (quirk; matters for b >= 3, where label 0 = b-1 >= 2
        bits; for b = 2 label 0 is 1-bit and ignores sym). Given-allocation path (meta allocation "given"): always
        sym = False.
     b. Quantizer.fit(W1, Hinv1, B) on W1 = the current (GPTQ-updated) W[:, st:ed] at group start, Hinv1 =
        Hinv[st:ed, st:ed]:
        B == 1: scale = mean_j |W1| per row, zero = mean_j W1 per row (binary_scale; no search);
                quantize(w) = sign(w - zero) * scale + zero.
        B >= 2 (SQC): xmin, xmax, both-zero rows as in step 2; scale = (xmax - xmin)/maxq; zero = (maxq+1)/2 for
                every row if sym else round(-xmin/scale) (sym keeps the ASYMMETRIC range: quirk); salience
                s = W1^2 / diag(Hinv1)^2; saliency_mask: mean and std (unbiased, N-1) over all rows x columns of
                s, z = (s - mean)/std, thr = min of s[|z| > 2]; mask1 (salient) = s >= thr, mask0 = s < thr (upstream
                crashes when no entry has |z| > 2, e.g. std = 0; here: no salient entries, counted in info
                "sqc_no_outlier_groups"). Candidates p, in this order: 1, linspace(1, 1.1, 51)[1:],
                linspace(1, 0.9, 51)[1:] (float32; tau_range 0.1, tau_n 50; 101 values, bit patterns in --json):
                xmin1 = p xmin, xmax1 = p xmax, scale1 = (xmax1 - xmin1)/maxq, zero1 = round(-xmin1/scale1) (sym:
                the fixed zero); Qp = scale1 (clamp(round(W1/scale1) + zero1, 0, maxq) - zero1);
                err = sum over mask0 |Qp - W1|^2.4 + lambda * sum over mask1 |Qp - W1|^2.4 per row (norm 2.4,
                lambda_salience 1 by default, so the mask has NO effect: quirk); per row, the first p with the
                smallest err wins (strict <, best starts at +inf). quantize(w) = scale (clamp(round(w/scale) + zero,
                0, maxq) - zero). Scales/zeros stay float32 (meta "scale_dtype": "fp16" rounds the fitted scale, and
                the 1-bit mean, to fp16 like a packed format would; diagnostic option, default float32 = upstream).
     c. GPTQ columns i = st..ed-1: q = quantize(W1[:, i]); err = (W1[:, i] - q)/Hinv1[i, i]; W1[:, i:] -= err
        Hinv1[i, i:]; after the group W[:, st:ed] = Q1 and W[:, ed:] -= Err1 Hinv[st:ed, ed:].
     The result (float32 here; upstream casts the final weight to the model dtype) is Q.
  Given allocation (run.py with a published block_precision_128_{b}bit/<net>.pt, meta "allocation": "given"): no
  get_salience, no search: plain GPTQ prologue (dead -> H[dead,dead] = 1, W[:, dead] = 0, H += percdamp mean(diag H)),
  bits = the given table, sym = False for every group; step 4 otherwise unchanged.
  H scale: steps 1 and 3 are not invariant under H -> c H (the absolute 0.01 and the dead diagonal 1 are not scaled).
  The reference converts the dumped H to upstream's (2/S) convention first: meta "hessian_norm" "tokens" (lowbit's
  observers: 2/N sum x x^T over N = S*T tokens) -> H_up = T * H (T = meta "seqlen"); "sequences" -> H as is.
  Equivalently, on lowbit's token-normalised H the dead diagonal is 1/T and the absolute damp 0.01/T. The final GPTQ
  and e are scale-invariant.
  dtype: upstream runs steps 1 (W in the model dtype: bf16 for Llama-3 with torch_dtype="auto", fp16 for LLaMA-1/2)
  and 2 (W, Wq, X, Y, softmax, KL all in the model dtype on GPU) in half precision, steps 3-4 in float32 (W.float(),
  H float32), and casts Q to the model dtype. This reference (and lowbit) uses float32 throughout; KL ties/rankings
  can therefore differ from an actual upstream run. Ties in S (degenerate inputs only) go to the lower group index
  here (stable argsort); upstream's np.argsort default is introsort (insertion sort, i.e. stable, for G <= 16 in the
  generic code; numpy >= 1.25 on AVX-512 CPUs dispatches to x86-simd-sort, whose tie order is unspecified).
  Bits: nominal b per weight (average of the table; exactly b when cols % group == 0). fasterquant returns a float32
  scale and zero per row and group (1-bit groups: scale = mean |w|, zero = mean w, a float; otherwise an integer
  zero); pack_model hands them to the repo's AutoGPTQ fork (its mixed packing not read here). Printed here:
  b_avg + 32/group (an fp16 scale + an fp16 zero per row and group); the table (2 bits per group) is not counted.
  Not covered: salient_block/nonsalient_block (fixed counts), disable_gptq (broken upstream: W1 undefined),
  SliM-LLM+ (OmniQuant backbone).

Dump contract (what lowbit's C++ writes per linear, env LOWBIT_QUANT_DUMP=DIR, DIR/<layer>.<linear>/):
  W.npy   f32 (rows, cols): the weight as the method received it.
  H.npy   f32 or f64 (cols, cols): the Hessian it received, BEFORE any dead fix / damping (convention in meta).
  Q.npy   f32 (rows, cols): lowbit's dequantized result.
  bits.npy int8 (G,): bits per group, G = ceil(cols/group) (values b-1, b, b+1).
  X.npy   f32 (or f16) (N, cols), N = nsamples * seqlen: the linear's calibration inputs as the method sees them,
          sample-major (rows [s*T, (s+1)*T) = sample s). Needed only when G >= 4; instead of a copy the meta may
          name a sibling directory holding the same inputs ("x_from": "0.self_attn.q_proj" for k/v, "...gate_proj"
          for up). Y is NOT dumped: the reference recomputes Y = X W^T.
  sba_err.npy f64 (G//2 - 1,) optional: lowbit's err_i (mean over samples of the per-sample KL sums), compared.
  meta.json {"method": "slim", "wbits": b, "group": 128, "damp": 0.01, "abs_damp": 0.01, "norm": 2.4,
          "lambda_salience": 1.0, "zscore": 2.0, "allocation": "sba"|"given", "small_g": "uniform"|"error",
          "hessian_norm": "tokens"|"sequences", "nsamples": S, "seqlen": T, optional "scale_dtype": "fp16",
          optional "x_from": "<sibling dir>"}.

Modes
  ref_slim.py layers DUMPDIR [--json OUT] [--strict] [--strict-error] [--tol 0.001] [--float64]
      per linear: runs steps 1-4 on W, H, X with the dump's meta and prints the groups whose bits differ, i* (ref),
      max |Q - Qref|, e = tr((Q-W) H (Q-W)^T) / tr(W H W^T) (float64, dumped H) of lowbit and of the reference and
      |e_lowbit/e_ref - 1|; when allocations differ also the reference with lowbit's allocation forced ("given
      allocation", keeping the SBA path's H treatment and sym rule) to separate allocation decisions from the
      quantizer; a bits check (values, equal counts of b-1 and b+1, same shape as the salience ranking S_final);
      with sba_err.npy the max relative difference of the search errors. --strict exits 1 when a linear's
      allocations differ AND |e_lowbit/e_ref - 1| > --tol (also on shape errors or non-finite Q); allocations equal
      but e off by more than --tol, or X missing where G >= 4 (then only the given-allocation comparison runs), is a
      WARNING that fails only with --strict-error.
  ref_slim.py layers --make-synthetic DIR [--seed S] [--corrupt K] [--wbits 2|3]
      synthetic dump (4 linears: G = 8 with a dead input channel, G = 4, G = 4 sharing X via x_from, G = 3 with a
      dead channel; random W with outliers, correlated X with outlier channels, S = 4 samples of T = 512 tokens,
      H = 2/N X^T X float32, "hessian_norm": "tokens"), "lowbit" Q/bits from this reference, compared (exit 0).
      --corrupt K changes the bits of >= min(K, possible) groups of the first linear keeping the average (swaps
      the b+1 of the most salient groups with the b-1 of the least salient ones, pairwise) and recomputes Q with
      that allocation forced: --strict must then exit 1.
  ref_slim.py model --model ../shared/models/testbed-25m --tokens DIR [--wbits 2|3] [--group 128] [--damp 0.01]
      [--true-sequential] [--eval wikitext2] [--max-windows N] [--json OUT]
      whole-model SliM-LLM through ref_quant_model's sequential pipeline (as tools/ref_pbllm.py quantize_model):
      per layer one pass over the calibration windows (DIR/calib.npy from quant_eval --dump-tokens) collects H
      (ref_quant_model.Hessians, 2/S convention, float64 -> float32) and, for linears with G >= 4, their inputs X
      per window (the same pass: upstream's second, search pass sees the same inputs since nothing of the layer is
      quantized yet); each linear is quantized; the layer's outputs are recomputed with the quantized weights.
      Upstream (run.py quant_sequential) quantizes all seven linears from one capture (no true-sequential;
      --true-sequential is an option here); the quantized weights stay float32 (upstream casts to the model dtype).
      --verbose prints each linear's table, i*, the search errors err_i and e.
      Perplexity via ref_quant_model.perplexity. On testbed-25m (hidden 384, intermediate 1024) only down_proj
      (G = 8, i in 1..3) is mixed-precision; the six 384-column linears (G = 3) are uniform b-bit (small_g).

    nice -n 19 /usr/bin/python3 tools/ref_slim.py layers --make-synthetic /tmp/slim-synth --strict
    nice -n 19 /usr/bin/python3 tools/ref_slim.py layers --make-synthetic /tmp/slim-bad --corrupt 2 --strict  # exit 1
    nice -n 19 /usr/bin/python3 tools/ref_slim.py model --model ../shared/models/testbed-25m --tokens /tmp/tok \\
        --wbits 2 --max-windows 4
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_pbllm  # noqa: E402  (recon_err, linear_sort_key)

F32 = torch.float32
ABS_DAMP = 0.01     # slim_gptq.py get_salience: damp = 0.01 added to diag H
TAU_RANGE, TAU_N = 0.1, 50  # mixed_quantizer.py Quantizer.fit
NORM = 2.4          # Quantizer(norm=2.4) default
ZSCORE = 2.0        # salient_mask.py saliency_mask threshold
PROB_MIN = 1e-6     # reconstruct.py kl_div clamp


def sqc_grid():
    """The 101 scale factors p of Quantizer.fit, in scan order (float32)."""
    return torch.cat([torch.ones(1), torch.linspace(1.0, 1 + TAU_RANGE, TAU_N + 1)[1:],
                      torch.linspace(1.0, 1 - TAU_RANGE, TAU_N + 1)[1:]])


def groups_of(cols, group):
    gs = cols if group == -1 else group
    return [(st, min(st + gs, cols)) for st in range(0, cols, gs)]


# ---------------------------------------------------------------- quantizers ----
def minmax_params(x, maxq):
    """Per-row asymmetric min-max range (GPTQ convention): (xmin, xmax) with 0 inside, both-zero rows (-1, +1)."""
    z = torch.zeros(x.shape[0], dtype=x.dtype)
    xmin = torch.minimum(x.min(1)[0], z)
    xmax = torch.maximum(x.max(1)[0], z)
    both = (xmin == 0) & (xmax == 0)
    xmin[both] = -1
    xmax[both] = +1
    return xmin, xmax


def rtn(x, scale, zero, maxq):
    """normal_quantize: scale * (clamp(round(x / scale) + zero, 0, maxq) - zero)."""
    return scale * (torch.clamp(torch.round(x / scale) + zero, 0, maxq) - zero)


def search_block_quantize(w, bits):
    """utils/bitsearch.py block_quantize (the SBA search's quantizer): plain per-row min-max RTN, 1-bit binary."""
    if bits <= 0 or bits >= 10:
        return w.clone()  # "prune" / unknown method: returned unchanged
    if bits == 1:
        m = w.mean(1)
        a = w.abs().mean(1)
        return torch.sign(w - m[:, None]) * a[:, None] + m[:, None]
    maxq = 2 ** bits - 1
    xmin, xmax = minmax_params(w, maxq)
    scale = (xmax - xmin) / maxq
    zero = torch.round(-xmin / scale)
    return rtn(w, scale[:, None], zero[:, None], maxq)


def saliency_mask(s, thr=ZSCORE):
    """utils/salient_mask.py: salient = s >= min(s[|z| > thr]); None when no outlier (upstream would crash)."""
    mean = torch.mean(s)
    std = torch.std(s)
    z = (s - mean) / std
    out = s[torch.abs(z) > thr]
    if out.numel() == 0:
        return None
    return s >= torch.min(out)


class GroupQuant:
    """Quantizer.fit / quantize for one group (mixed_quantizer.py)."""

    def __init__(self, w1, hinv1_diag, bits, sym, lam=1.0, norm=NORM, scale_fp16=False):
        self.bits = bits
        self.no_outlier = False
        if bits == 1:
            self.scale = w1.abs().mean(1)  # binary_scale: (mean |w|, mean w)
            self.zero = w1.mean(1)
            if scale_fp16:
                self.scale = self.scale.half().to(w1.dtype)
                self.zero = self.zero.half().to(w1.dtype)
            self.p = None
            return
        if bits < 1:
            raise ValueError(f"bits {bits}: Quantizer.fit returns without parameters upstream")
        maxq = 2 ** bits - 1
        self.maxq = maxq
        xmin, xmax = minmax_params(w1, maxq)
        scale = (xmax - xmin) / maxq
        if sym:
            zero = torch.full_like(scale, (maxq + 1) / 2)
        else:
            zero = torch.round(-xmin / scale)
        s = w1 ** 2 / hinv1_diag.reshape(1, -1) ** 2
        m1 = saliency_mask(s)
        if m1 is None:
            self.no_outlier = True
            m1 = torch.zeros_like(s, dtype=torch.bool)
            m0 = ~torch.isnan(s)
        else:
            m0 = s < torch.min(s[m1])
        best = torch.full([w1.shape[0]], float("inf"), dtype=w1.dtype)
        pbest = torch.ones(w1.shape[0], dtype=w1.dtype)
        zeros = torch.zeros((), dtype=w1.dtype)
        for p in sqc_grid().to(w1.dtype):
            xmin1, xmax1 = p * xmin, p * xmax
            scale1 = (xmax1 - xmin1) / maxq
            zero1 = zero if sym else torch.round(-xmin1 / scale1)
            d = (rtn(w1, scale1[:, None], zero1[:, None], maxq) - w1).abs().pow(norm)
            err = torch.where(m0, d, zeros).sum(1) + lam * torch.where(m1, d, zeros).sum(1)
            upd = err < best
            if bool(upd.any()):
                pbest[upd] = p
                best[upd] = err[upd]
                scale[upd] = scale1[upd]
                zero[upd] = zero1[upd]
        if scale_fp16:
            scale = scale.half().to(w1.dtype)
        self.scale, self.zero, self.p = scale, zero, pbest

    def __call__(self, w):
        if self.bits == 1:
            return torch.sign(w - self.zero) * self.scale + self.zero
        return rtn(w, self.scale, self.zero, self.maxq)


# ---------------------------------------------------------------- SBA ----
def cholesky_upper_inv(H):
    L = torch.linalg.cholesky(H)
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)


def group_salience(W, Hinv, groups):
    """sum over the group of W^2 / diag(Hinv)^2 (float32 reduction, then a Python float like .item())."""
    d = torch.diag(Hinv)
    return [float(torch.sum(W[:, st:ed] ** 2 / d[st:ed].reshape(1, -1) ** 2)) for st, ed in groups]


def labels_for(sal, i):
    """0 for the i lowest-salience groups, 2 for the i highest, 1 otherwise (argsort ascending, ties: lower index)."""
    order = np.argsort(np.asarray(sal, dtype=np.float64), kind="stable")
    lab = [1] * len(sal)
    if i > 0:
        for j in order[:i]:
            lab[j] = 0
        for j in order[-i:]:
            lab[j] = 2
    return lab


def split_samples(X, nsamples):
    """X: a list of per-sample (T, cols) tensors, or an (N, cols) array split into nsamples equal parts."""
    if isinstance(X, (list, tuple)):
        return [torch.as_tensor(x) for x in X]
    X = torch.as_tensor(np.asarray(X))
    if nsamples < 1 or X.shape[0] % nsamples:
        raise ValueError(f"X has {X.shape[0]} rows, not a multiple of nsamples {nsamples}")
    return list(torch.chunk(X, nsamples, dim=0))


def kl_sum(logits_q, logp_fp):
    """reconstruct.py kl_div for one sample: sum P (log P - log R), P = clamp(softmax(quantized outputs)), R likewise
    from the true outputs (logp_fp = log R); the sum accumulated in float64."""
    p = F.softmax(logits_q, dim=-1).clamp(min=PROB_MIN)
    return float((p * (torch.log(p) - logp_fp)).double().sum())


def sba_search(W, sal_search, Xs, b, groups, dtype):
    """activation_aware_search over i = 1..G//2-1; returns (errors (mean over samples), i*)."""
    G = len(groups)
    Wt = W.to(dtype)
    cache_ok = sum(x.shape[0] for x in Xs) * W.shape[0] * 4 < (512 << 20)
    logp_cache = [None] * len(Xs)

    def logp_fp(s):
        if logp_cache[s] is not None:
            return logp_cache[s]
        r = torch.log(F.softmax(Xs[s].to(dtype) @ Wt.T, dim=-1).clamp(min=PROB_MIN))
        if cache_ok:
            logp_cache[s] = r
        return r

    errors = []
    for i in range(1, G // 2):
        lab = labels_for(sal_search, i)
        Wq = torch.zeros_like(Wt)
        for g, (st, ed) in enumerate(groups):
            Wq[:, st:ed] = search_block_quantize(Wt[:, st:ed], (b - 1, b, b + 1)[lab[g]])
        per_sample = [kl_sum(Xs[s].to(dtype) @ Wq.T, logp_fp(s)) for s in range(len(Xs))]
        errors.append(float(np.mean(per_sample)))
    if not errors:
        return errors, 0
    return errors, errors.index(min(errors)) + 1


def to_upstream_h(H, meta):
    norm = meta.get("hessian_norm", "tokens")
    if norm == "tokens":
        return H * float(meta["seqlen"])
    if norm == "sequences":
        return H
    raise ValueError(f"hessian_norm {norm!r}")


# ---------------------------------------------------------------- SliM-LLM per linear ----
def slim_quantize(W, H, meta, X=None, force_bits=None, dtype=F32):
    """Steps 1-4 on one linear. X: calibration inputs (needed when G >= 4 and force_bits is None). force_bits (G,)
    replaces the allocation (steps 2-3's decision); with meta allocation "sba" the SBA path's H treatment and sym
    rule are kept. Returns (Q float32, bits int8 (G,), info)."""
    b = int(meta["wbits"])
    group = int(meta.get("group", 128))
    percdamp = float(meta.get("damp", 0.01))
    abs_damp = float(meta.get("abs_damp", ABS_DAMP))
    lam = float(meta.get("lambda_salience", 1.0))
    norm = float(meta.get("norm", NORM))
    mode = meta.get("allocation", "sba")
    scale_fp16 = meta.get("scale_dtype", "f32") == "fp16"
    W0 = torch.as_tensor(np.asarray(W)).to(dtype)
    rows, cols = W0.shape
    H = to_upstream_h(torch.as_tensor(np.asarray(H)).to(dtype).clone(), meta)
    groups = groups_of(cols, group)
    G = len(groups)
    idx = torch.arange(cols)
    dead = torch.diag(H) == 0
    info = {"rows": rows, "cols": cols, "numel": rows * cols, "groups": G, "dead": int(dead.sum()), "mode": mode}
    W = W0.clone()
    if mode == "given":
        if force_bits is None:
            raise ValueError("allocation 'given' needs the bit table")
        H[dead, dead] = 1
        W[:, dead] = 0
        H[idx, idx] += percdamp * torch.mean(torch.diag(H))
        Hinv = cholesky_upper_inv(H)
        bits = [int(x) for x in np.asarray(force_bits).reshape(-1)]
        labels = None
    elif mode == "sba":
        # step 1: get_salience changes H in place
        H[dead, dead] = 1
        H[idx, idx] += abs_damp
        sal_search = group_salience(W0, cholesky_upper_inv(H), groups)
        # step 3's prologue: no dead columns any more (diag >= abs_damp), relative damp incl. the +abs_damp
        H[idx, idx] += percdamp * torch.mean(torch.diag(H))
        Hinv = cholesky_upper_inv(H)
        sal_final = group_salience(W, Hinv, groups)
        info["salience"] = sal_final
        if force_bits is not None:
            bits = [int(x) for x in np.asarray(force_bits).reshape(-1)]
            labels = [0 if x < b else (2 if x > b else 1) for x in bits]
            info["forced"] = True
        else:
            if G < 4:
                if meta.get("small_g", "uniform") == "error":
                    raise ValueError(f"G = {G} < 4: upstream's search range is empty and fasterquant fails "
                                     "(min() of an empty sequence)")
                errors, istar = [], 0
            else:
                if X is None:
                    raise ValueError("SBA needs the calibration inputs X (G >= 4)")
                errors, istar = sba_search(W0, sal_search, split_samples(X, int(meta.get("nsamples", 1))), b,
                                           groups, dtype)
            labels = labels_for(sal_final, istar)
            bits = [(b - 1, b, b + 1)[l] for l in labels]
            info.update(i_star=istar, sba_errors=errors,
                        order_mismatch=istar > 0 and labels != labels_for(sal_search, istar))
    else:
        raise ValueError(f"allocation {mode!r}")
    if len(bits) != G:
        raise ValueError(f"bit table of {len(bits)} entries for {G} groups")
    sym = True  # Quantizer(...) default; one quantizer per linear
    no_outlier = 0
    for g, (st, ed) in enumerate(groups):
        if labels is None or labels[g] != 0:
            sym = False
        W1 = W[:, st:ed].clone()
        Hinv1 = Hinv[st:ed, st:ed]
        quant = GroupQuant(W1, torch.diag(Hinv1), bits[g], sym, lam, norm, scale_fp16)
        no_outlier += quant.no_outlier
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        for i in range(ed - st):
            w = W1[:, i]
            q = quant(w)
            Q1[:, i] = q
            err = (w - q) / Hinv1[i, i]
            W1[:, i:] -= err.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err
        W[:, st:ed] = Q1
        W[:, ed:] -= Err1.matmul(Hinv[st:ed, ed:])
    info["bits"] = bits
    info["sqc_no_outlier_groups"] = no_outlier
    return W.to(F32), np.asarray(bits, dtype=np.int8), info


# ---------------------------------------------------------------- method adaptor ----
class SliM:
    name = "slim"
    script = "tools/ref_slim.py"

    @staticmethod
    def add_options(p):
        p.add_argument("--wbits", type=int, default=2, help="average bits b (groups get b-1, b, b+1)")
        p.add_argument("--group", type=int, default=128, help="group = GPTQ block = allocation unit")
        p.add_argument("--damp", type=float, default=0.01, help="percdamp (fraction of mean diag H)")
        p.add_argument("--abs-damp", type=float, default=ABS_DAMP, help="get_salience's absolute damp")
        p.add_argument("--lambda-salience", type=float, default=1.0)
        p.add_argument("--small-g", choices=["uniform", "error"], default="uniform",
                       help="G < 4 (empty search range): uniform b bits, or fail like upstream")
        p.add_argument("--scale-dtype", choices=["f32", "fp16"], default="f32")

    @staticmethod
    def meta_from_args(a):
        m = {"method": "slim", "wbits": a.wbits, "group": a.group, "damp": a.damp, "abs_damp": a.abs_damp,
             "norm": NORM, "lambda_salience": a.lambda_salience, "zscore": ZSCORE, "allocation": "sba",
             "small_g": a.small_g}
        if a.scale_dtype != "f32":
            m["scale_dtype"] = a.scale_dtype
        return m

    @staticmethod
    def label(m):
        return f"slim w{m['wbits']} g{m['group']} damp{m['damp']}"

    @staticmethod
    def quantize(W, H, m, X=None, force_bits=None, dtype=F32):
        return slim_quantize(W, H, m, X, force_bits, dtype)

    @staticmethod
    def check_bits(bits, m, sal=None):
        """Table sanity: values in {b-1, b, b+1}, as many b-1 as b+1 groups, i within the search range, and (with the
        reference's S_final) the b-1 / b+1 groups are the i lowest / highest-salience ones."""
        b = int(m["wbits"])
        bits = [int(x) for x in bits]
        G = len(bits)
        lo, hi = bits.count(b - 1), bits.count(b + 1)
        r = {"bad_values": sum(1 for x in bits if x not in (b - 1, b, b + 1)), "unbalanced": int(lo != hi),
             "i_out_of_range": int(not (lo == 0 if G < 4 else 1 <= lo <= G // 2 - 1))}
        if sal is not None and m.get("allocation", "sba") == "sba":
            r["not_salience_ordered"] = int(lo == hi and [(b - 1, b, b + 1)[l] for l in labels_for(sal, lo)] != bits)
        return r

    @staticmethod
    def corrupt(bits, sal, m, k):
        """Swap the bits of (most salient b+1 group, least salient b-1 group) pairs until >= k groups changed."""
        b = int(m["wbits"])
        bits = bits.copy()
        order = np.argsort(np.asarray(sal), kind="stable")
        changed = 0
        for j in range(len(order) // 2):
            lo, hi = order[j], order[-1 - j]
            if changed >= k:
                break
            if bits[lo] != bits[hi]:
                bits[lo], bits[hi] = bits[hi], bits[lo]
                changed += 2
        if not changed:  # uniform table: push one group up and one down
            bits[order[0]], bits[order[-1]] = b - 1, b + 1
        return bits

    @staticmethod
    def bits(stats, m):
        tot = sum(s["numel"] for s in stats.values())
        wb = 0
        hist = {}
        for s in stats.values():
            for (st, ed), x in zip(groups_of(s["cols"], int(m["group"])), s["bits"]):
                wb += x * s["rows"] * (ed - st)
                hist[x] = hist.get(x, 0) + 1
        avg = wb / tot
        g = int(m["group"])
        over = 32.0 / g if g > 0 else 0.0
        return (f"bits: {avg:.4f} bits/weight average (group widths {dict(sorted(hist.items()))}); + fp16 scale and "
                f"zero per row and {g}-column group = {avg + over:.4f} (table 2 bits/group not counted)"), \
            {"bits": avg, "bits_with_scales": avg + over, "group_bits_hist": {str(k): v for k, v in hist.items()}}


# ---------------------------------------------------------------- layers mode ----
def load_x(dirpath, meta):
    p = os.path.join(dirpath, "X.npy")
    if meta.get("x_from"):
        p = os.path.join(os.path.dirname(dirpath), meta["x_from"], "X.npy")
    if not os.path.exists(p):
        return None
    return np.load(p, mmap_mode="r").astype(np.float32)


def compare_linear(dirpath, a):
    meta = json.load(open(os.path.join(dirpath, "meta.json")))
    if meta.get("method") != SliM.name:
        raise SystemExit(f"{dirpath}: meta method {meta.get('method')!r}, this is {SliM.script}")
    ld = lambda fn: np.load(os.path.join(dirpath, fn + ".npy"))  # noqa: E731
    W, H, Q, bits = ld("W"), ld("H"), ld("Q"), ld("bits").astype(np.int64).reshape(-1)
    rows, cols = W.shape
    G = len(groups_of(cols, int(meta.get("group", 128))))
    r = {"shape": [rows, cols], "meta": meta, "problems": [], "warnings": []}
    if H.shape != (cols, cols) or Q.shape != W.shape or bits.shape != (G,):
        r["problems"].append(f"shapes W {W.shape} H {H.shape} Q {Q.shape} bits {bits.shape} (G = {G})")
        return r
    if not np.isfinite(Q).all():
        r["problems"].append(f"{int((~np.isfinite(Q)).sum())} non-finite Q entries")
    dtype = torch.float64 if a.float64 else F32
    X = load_x(dirpath, meta) if G >= 4 and meta.get("allocation", "sba") == "sba" else None
    given = meta.get("allocation", "sba") == "given"
    t0 = time.time()
    if given or (G >= 4 and X is None):
        if not given:
            r["warnings"].append("no X.npy: allocation not checked, reference run with lowbit's table")
        Qr, br, info = SliM.quantize(W, H, meta, force_bits=bits, dtype=dtype)
    else:
        Qr, br, info = SliM.quantize(W, H, meta, X=X, dtype=dtype)
    r["seconds"] = time.time() - t0
    r["ref_bits"] = [int(x) for x in br]
    r["lowbit_bits"] = [int(x) for x in bits]
    r["info_ref"] = info
    diff = np.flatnonzero(br.astype(np.int64) != bits)
    r["bits_differ"] = [int(g) for g in diff]
    r["bits_check"] = SliM.check_bits(bits, meta, info.get("salience"))
    r["max_abs_dq"] = float(np.abs(Q.astype(np.float64) - Qr.double().numpy()).max())
    r["e_lowbit"] = ref_pbllm.recon_err(Q, W, H)
    r["e_ref"] = ref_pbllm.recon_err(Qr, W, H)
    r["e_rel_diff"] = abs(r["e_lowbit"] / r["e_ref"] - 1) if r["e_ref"] > 0 else float(r["e_lowbit"] != 0)
    if len(diff):
        Qg, _, _ = SliM.quantize(W, H, meta, force_bits=bits, dtype=dtype)
        r["given_alloc_max_abs_dq"] = float(np.abs(Q.astype(np.float64) - Qg.double().numpy()).max())
        r["given_alloc_e_ref"] = ref_pbllm.recon_err(Qg, W, H)
    p = os.path.join(dirpath, "sba_err.npy")
    if os.path.exists(p) and info.get("sba_errors"):
        le = np.load(p).astype(np.float64).reshape(-1)
        re = np.asarray(info["sba_errors"], np.float64)
        if le.shape != re.shape:
            r["problems"].append(f"sba_err.npy has {le.size} entries, the search range {re.size}")
        else:
            r["sba_err_max_rel_diff"] = float(np.max(np.abs(le / re - 1)))
    return r


def run_layers(a):
    if a.make_synthetic:
        make_synthetic(a.make_synthetic, a, a.seed, a.corrupt)
        a.dumpdir = a.dumpdir or a.make_synthetic
    if not a.dumpdir:
        raise SystemExit("layers: DUMPDIR or --make-synthetic DIR")
    names = sorted((x for x in os.listdir(a.dumpdir) if os.path.exists(os.path.join(a.dumpdir, x, "meta.json"))),
                   key=ref_pbllm.linear_sort_key)
    if not names:
        raise SystemExit(f"{a.dumpdir}: no <linear>/meta.json")
    out, bad, warn = {}, 0, 0
    for name in names:
        r = compare_linear(os.path.join(a.dumpdir, name), a)
        out[name] = r
        if r["problems"] and "bits_differ" not in r:
            print(f"{name:<22} PROBLEM: {'; '.join(r['problems'])}", flush=True)
            bad += 1
            continue
        nd = len(r["bits_differ"])
        extra = ""
        if nd:
            extra = (f" groups {r['bits_differ'][:8]}{'...' if nd > 8 else ''} lowbit {r['lowbit_bits']} ref "
                     f"{r['ref_bits']} | given lowbit's allocation: max|dQ| {r['given_alloc_max_abs_dq']:.3g} e_ref "
                     f"{r['given_alloc_e_ref']:.6f}")
        istar = r["info_ref"].get("i_star")
        bc = ",".join(f"{k} {v}" for k, v in r["bits_check"].items() if v)
        failed = bool(r["problems"]) or (nd > 0 and r["e_rel_diff"] > a.tol)
        warned = (nd == 0 and r["e_rel_diff"] > a.tol) or bool(r["warnings"])
        sba = f" | sba_err rel {r['sba_err_max_rel_diff']:.2e}" if "sba_err_max_rel_diff" in r else ""
        print(f"{name:<22} {r['shape'][0]}x{r['shape'][1]} | bits differ {nd}/{len(r['ref_bits'])}"
              f"{'' if istar is None else f' (ref i* {istar})'}{extra} | max|Q-Qref| {r['max_abs_dq']:.3g}"
              f" | e lowbit {r['e_lowbit']:.6f} ref {r['e_ref']:.6f} rel {r['e_rel_diff']:.2e}{sba}"
              f"{' | bits check: ' + bc if bc else ''}{' | ' + '; '.join(r['problems']) if r['problems'] else ''}"
              f" | {r['seconds']:.1f} s{'  FAIL' if failed else ''}"
              f"{'  WARNING: ' + ('; '.join(r['warnings']) or 'allocations agree, e differs') if warned else ''}",
              flush=True)
        bad += failed or (warned and a.strict_error)
        warn += warned
    ndiff = sum(1 for r in out.values() if r.get("bits_differ"))
    print(f"{len(names)} linears, {ndiff} with differing allocations, {bad} failing (allocations differ and "
          f"|e_lowbit/e_ref-1| > {a.tol}){f', {warn} warnings' if warn else ''}", flush=True)
    if a.json:
        g = sqc_grid().numpy()
        with open(a.json, "w") as f:
            json.dump({"generator": f"{SliM.script} layers", "dumpdir": os.path.abspath(a.dumpdir), "tol": a.tol,
                       "sqc_grid_f32": [float(x) for x in g],
                       "sqc_grid_f32_bits": [f"0x{int(x):08x}" for x in g.view(np.uint32)],
                       "linears": out}, f, indent=1)
            f.write("\n")
    return 1 if bad and a.strict else 0


def synthetic_case(rng, m, n, S, T, dead):
    """(W f32 (m, n), X f32 (S*T, n), H f32 = 2/N X^T X): correlated anisotropic X with 3 outlier channels."""
    N = S * T
    X = rng.standard_normal((N, n)) @ (rng.standard_normal((n, n)) / math.sqrt(n) + np.eye(n))
    X *= np.exp(0.5 * rng.standard_normal(n))[None, :]
    X[:, rng.choice(n, 3, replace=False)] *= 20.0
    if dead:
        X[:, rng.integers(n)] = 0.0
    X = X.astype(np.float32)
    H = (2.0 / N * (X.astype(np.float64).T @ X)).astype(np.float32)
    W = (rng.standard_normal((m, n)) * 0.05 * np.exp(0.5 * rng.standard_normal(m))[:, None]).astype(np.float32)
    W *= np.exp(0.7 * rng.standard_normal(n // 128 + 1)).repeat(128)[None, :n].astype(np.float32)  # group spread
    W.ravel()[rng.choice(W.size, W.size // 200, replace=False)] *= 8.0
    return W, X, H


def make_synthetic(out, a, seed=0, corrupt=0):
    rng = np.random.default_rng(seed)
    S, T = 4, 512
    cases = [("0.mlp.down_proj", 128, 1024, True, None), ("0.self_attn.q_proj", 96, 512, False, None),
             ("0.self_attn.k_proj", 32, 512, False, "0.self_attn.q_proj"), ("1.self_attn.o_proj", 64, 384, True, None)]
    base = dict(SliM.meta_from_args(a), hessian_norm="tokens", nsamples=S, seqlen=T)
    os.makedirs(out, exist_ok=True)
    Xs = {}
    for k, (name, m, n, dead, xf) in enumerate(cases):
        if xf:
            X = Xs[xf]
            W = (rng.standard_normal((m, n)) * 0.05).astype(np.float32)
            H = (2.0 / X.shape[0] * (X.astype(np.float64).T @ X)).astype(np.float32)
        else:
            W, X, H = synthetic_case(rng, m, n, S, T, dead)
        Xs[name] = X
        meta = dict(base, x_from=xf) if xf else base
        Q, bits, info = SliM.quantize(W, H, meta, X=X)
        if corrupt and k == 0:
            bits = SliM.corrupt(bits, info["salience"], meta, corrupt)
            Q, _, _ = SliM.quantize(W, H, meta, force_bits=bits)
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        for fn, arr in (("W", W), ("H", H), ("Q", Q.numpy().astype(np.float32)), ("bits", bits.astype(np.int8))):
            np.save(os.path.join(d, fn + ".npy"), arr)
        if not xf:
            np.save(os.path.join(d, "X.npy"), X)
        if info.get("sba_errors"):
            np.save(os.path.join(d, "sba_err.npy"), np.asarray(info["sba_errors"], np.float64))
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump(meta, f)
    print(f"wrote synthetic dump of {len(cases)} linears to {out}{f' (corrupted {corrupt})' if corrupt else ''}",
          flush=True)


# ---------------------------------------------------------------- model mode ----
class Capture:
    """ref_quant_model.Hessians (2/S sum x x^T over windows, float64) plus the raw inputs of the names in keep_x."""

    def __init__(self, names, keep_x):
        import ref_quant_model
        self.hs = ref_quant_model.Hessians(names)
        self.X = {n: [] for n in keep_x}

    def __call__(self, name, inp):
        self.hs(name, inp)
        if name in self.X:
            self.X[name].append(inp.to(F32).clone())


@torch.no_grad()
def quantize_model(model, a):
    import ref_quant_model
    meta = dict(SliM.meta_from_args(a), hessian_norm="sequences")
    L = model.cfg["num_hidden_layers"]
    w = dict(model.w)
    calib = np.load(os.path.join(a.tokens, "calib.npy"))
    meta.update(nsamples=int(calib.shape[0]), seqlen=int(calib.shape[1]))
    tables = model.rope_tables(calib.shape[1])
    emb = model.w["model.embed_tokens.weight"]
    xs = [emb[model.ids(row)] for row in calib]
    stats = {}
    for l in range(L):
        t0 = time.time()
        for group in ref_quant_model.SEQUENTIAL if a.true_sequential else [ref_quant_model.LINEARS]:
            keep = [n for n in group
                    if len(groups_of(w[f"model.layers.{l}.{n}.weight"].shape[1], a.group)) >= 4]
            cap = Capture(group, keep)
            for x in xs:
                model.block(l, x, tables, w=w, hook=cap)
            for name in group:
                key = f"model.layers.{l}.{name}.weight"
                W = w[key].float()
                H = cap.hs.H[name].float()  # upstream accumulates H in float32
                Q, bits, info = SliM.quantize(W, H, meta, X=cap.X.get(name))
                info["e"] = ref_pbllm.recon_err(Q, W, H)
                info.pop("salience", None)
                stats[f"{l}.{name}"] = info
                if a.verbose:
                    print(f"  {l} {name:<18} bits {info['bits']} i* {info.get('i_star')} e {info['e']:.6f}"
                          f"{' sba ' + str(['%.4g' % e for e in info['sba_errors']]) if info.get('sba_errors') else ''}"
                          f"{' ORDER-MISMATCH' if info.get('order_mismatch') else ''}", file=sys.stderr)
                w[key] = Q.to(w[key].dtype)
            cap.X.clear()
        xs = [model.block(l, x, tables, w=w) for x in xs]
        print(f"  layer {l}: {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    return w, stats, meta


def run_model(a):
    import ref_quant_model
    import ref_score
    model = ref_score.Llama(a.model)
    t0 = time.time()
    w, stats, meta = quantize_model(model, a)
    tq = time.time() - t0
    label = SliM.label(meta) + (" true-seq" if a.true_sequential else "")
    print(f"ref {label}: quantized in {tq:.0f} s", flush=True)
    bline, bnum = SliM.bits(stats, meta)
    print(f"ref {label}: {bline}", flush=True)
    mixed = {k: s["bits"] for k, s in stats.items() if s.get("i_star")}
    print(f"ref {label}: mixed-precision linears {len(mixed)}/{len(stats)}, i* "
          f"{[s.get('i_star') for s in stats.values() if s.get('sba_errors')]}, order mismatches "
          f"{sum(1 for s in stats.values() if s.get('order_mismatch'))}", flush=True)
    out, times = {}, {}
    for ds in a.eval.split(","):
        t1 = time.time()
        ids = np.load(os.path.join(a.tokens, ds + ".npy"))
        ppl, nw = ref_quant_model.perplexity(model, w, ids, a.seqlen, a.max_windows)
        times[ds] = time.time() - t1
        print(f"ref {label}: {ds} ppl {ppl:.4f} ({nw} windows, {times[ds]:.0f} s)", flush=True)
        out[ds] = ppl
    if a.json:
        settings = dict(meta, generator=f"{SliM.script} model", model=a.model, true_sequential=a.true_sequential,
                        eval_seqlen=a.seqlen, max_windows=a.max_windows, quantize_seconds=tq, eval_seconds=times)
        with open(a.json, "w") as f:
            json.dump({"settings": settings, "ppl": out, "bits": bnum, "linears": stats}, f, indent=1)
            f.write("\n")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    sub = ap.add_subparsers(dest="mode", required=True)
    la = sub.add_parser("layers", help="compare lowbit's per-linear dump")
    la.add_argument("dumpdir", nargs="?")
    la.add_argument("--json", default="")
    la.add_argument("--make-synthetic", default="", metavar="DIR", help="write a synthetic dump to DIR, compare it")
    la.add_argument("--seed", type=int, default=0, help="(synthetic)")
    la.add_argument("--corrupt", type=int, default=0, help="(synthetic) change the bits of this many groups")
    la.add_argument("--strict", action="store_true",
                    help="exit 1 when a linear's allocations differ and its e differs by more than --tol")
    la.add_argument("--strict-error", action="store_true", help="with --strict, warnings fail too")
    la.add_argument("--tol", type=float, default=0.001, help="relative tolerance on e (0.001 = 0.1%%)")
    la.add_argument("--float64", action="store_true", help="run the reference in float64 (diagnostic)")
    SliM.add_options(la.add_argument_group("synthetic dump options (a real dump's meta.json wins)"))
    mo = sub.add_parser("model", help="whole-model quantization + perplexity")
    mo.add_argument("--model", required=True)
    mo.add_argument("--tokens", required=True, help="directory written by quant_eval --dump-tokens")
    SliM.add_options(mo)
    mo.add_argument("--true-sequential", action="store_true")
    mo.add_argument("--eval", default="wikitext2")
    mo.add_argument("--seqlen", type=int, default=2048)
    mo.add_argument("--max-windows", type=int, default=0)
    mo.add_argument("--verbose", action="store_true", help="print each linear's allocation, i*, KL errors and e")
    mo.add_argument("--json", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sys.exit(run_layers(a) if a.mode == "layers" else run_model(a))


if __name__ == "__main__":
    main()
