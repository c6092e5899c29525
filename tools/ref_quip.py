#!/usr/bin/env python3
"""Independent PyTorch reference for lowbit's QuIP (Chee, Cai, Kuleshov, De Sa 2023, "QuIP: 2-Bit Quantization
of Large Language Models With Guarantees"), for comparison with the C++ implementation.

It ports the authors' code path `--quant ldlq|ldlqRG --incoh_processing` (github Cornell-RelaxML/QuIP: method.py
QuantMethod.preproc/postproc and mul_ortho_butterfly, bal.py Balance.fasterquant, vector_balance.py
quantize_weight_vecbal/round_ldl/round_sorted_ldlqRG, quant.py qfn 'b'), written from reading it, in float64.
Per linear W (m = out features, n = in features), H = (1/N) sum x x^T over the N calibration tokens (float64):
  1. diagonal rescaling (paper: Algorithm 1, incoherence pre-processing; method.py preproc_rescale)
       H <- H / max|H|;  d = (clamp(diag H, 1e-8) / clamp(diag W^T W, 1e-8))^(1/4), clamp(d, 1e-8),
       d rounded to float32 (lowbit stores it as f32, so both sides use the rounded value);
       W <- W diag(d);  H <- H / (d d^T).
     Why: it balances W's column norms against H's diagonal so that the proxy loss is spread evenly before the
     rotation (the paper's D~ = (diag H / diag W^T W)^(1/4)).
  2. incoherence (paper §4, "efficient orthogonal multiplication" with two-factor Kronecker/butterfly matrices;
     method.py preproc_proj, proj_extra 0): H <- H n/(tr H + 1e-8) + 0.01 I; W' = U W V^T, H' = V H V^T with U, V
     random orthogonal butterflies (a random permutation in, blocks of random SO(p1) then SO(p2) matrices, a random
     permutation out; n = p1 p2 from the sorted prime factors at even / odd positions). Why: incoherent W' and H'
     make the single-scale uniform grid of step 4 and LDLQ's bound (paper Thm. on LDLQ + incoherence) work.
  3. GPTQ's H fix (method.py preproc_gptqH): dead = diag H' == 0 -> H'[dead,dead] = 1, W'[:,dead] = 0;
     H' += percdamp mean(diag H') I.
  4. qfn 'b' (vector_balance.py quantize_weight_vecbal): one scale per matrix s = 2.4 RMS(W') + 1e-16 (rounded to
     float32, as lowbit stores it); t = clamp(((W'/s) + 1)/2 maxq, 0, maxq), maxq = 2^b - 1.
  5. LDLQ (paper §3, eq. W^_k = Q(W_k + (W_{<k} - W^_{<k}) a_k) with H = (U'+I) D (U'+I)^T; here in the code's
     reversed order with the lower Cholesky factor; vector_balance.py round_ldl): L = chol(H') normalised to unit
     diagonal, minus I; for i = n-1..0: w^_i = clamp(floor(t_i + (t_{i:} - w^_{i:}) L_{i:,i} + 1/2), 0, maxq);
     then `npasses` greedy coordinate-descent passes (the paper's "greedy local search" heuristic: each code is
     set to round-half-even of its unconstrained minimiser of tr(s H s^T) given the others; the clamp comes only
     after the pass, and the residual s is not re-clamped - upstream's quirk, kept). ldlqRG (round_sorted_ldlqRG,
     the paper's LDLQ-RG) runs the same on the columns sorted by diag H' ascending (here a STABLE argsort;
     upstream's torch.argsort is not stable, which only matters for exactly tied diagonals).
  6. W^' = (w^/maxq 2 - 1) s;  W^ = U^T W^' V diag(1/d) (paper Algorithm 2; method.py postproc).
Upstream quirks deliberately not reproduced: its fp16 rounding of W/W'/the result (the layer dtype) and its float32
arithmetic. Everything here is float64 so that two implementations that follow the same order of operations get
identical codes (the only remaining differences are summation orders inside dot products).

Modes
  ref_quip.py layers DUMPDIR [--json OUT]
      DUMPDIR/<layer>.<name>/ as written by lowbit: W.npy (f32 m x n), H.npy (f64 n x n, 1/N sum x x^T),
      U.npy, V.npy (f64 dense rotations actually used; for the butterfly kind also {U,V}_perm_in/_perm_out.npy
      (int64) and {U,V}_B0.npy (size/p1, p1, p1), {U,V}_B1.npy (size/p2, p2, p2), checked against U/V through
      mul_ortho_butterfly), d.npy (f64 n, lowbit's d), codes.npy (int32 m x n), meta.json {bits, scale, npasses,
      order, rotation, damp}. Runs steps 1-5 with the given H, W, U, V and options and prints, per linear: the
      relative d and s differences, the number of differing codes (and rows), and the proxy loss
      tr((W^-W) H (W^-W)^T) / tr(W H W^T) of lowbit's result and of this reference.
  ref_quip.py layers --make-synthetic DIR [--seed S] [--bits B] [--corrupt K]
      writes a synthetic dump into DIR (random W, H = X^T X / N, our own butterflies plus one Hadamard linear; its
      "lowbit" d/s/codes come from a second, numpy, lazy-batch implementation below, so the comparison exercises
      a different summation order) and then compares it as above. --corrupt K changes K codes of the first linear
      to check that differences are detected.
  ref_quip.py model --model ../shared/models/testbed-25m --tokens DIR --wbits 2|3|4 [--order ldlq|ldlqRG]
      [--npasses 1] [--seed S] [--true-sequential] [--eval wikitext2,...] [--max-windows N] [--json OUT]
      whole-model QuIP with tools/ref_quant_model.py's pipeline and perplexity (tools/ref_score.py's forward):
      calibration windows from DIR/calib.npy (quant_eval --dump-tokens), layer by layer, H of each linear summed
      in float64 over all captured inputs and divided by the total token count, quantized outputs propagated.
      U, V are drawn like upstream (torch.randperm, scipy special_ortho_group for p > 2, a uniform random 2x2
      rotation for p = 2) from generators seeded per linear by (--seed, layer, linear index), so a result does
      not depend on the order linears are processed in (upstream draws from the global RNG).

    build/release/quant_eval ../shared/models/testbed-25m --dump-tokens /tmp/tok \\
        --calib ../shared/data/calib/testbed-calib.txt --nsamples 16 --seqlen 2048 --eval wikitext2
    nice -n 19 /usr/bin/python3 tools/ref_quip.py model --model ../shared/models/testbed-25m --tokens /tmp/tok \\
        --wbits 2 --seed 0 --max-windows 8
    nice -n 19 /usr/bin/python3 tools/ref_quip.py layers --make-synthetic /tmp/quip-synth
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

F64 = torch.float64


# ---------------------------------------------------------------- butterflies (method.py) ----
def prime_factors(n):
    """Sorted prime factors of n with multiplicity (what primefac.primefac yields for the sizes we meet)."""
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def butterfly_factors(n):
    """(p1, p2): products of the sorted prime factors at even and at odd positions (method.py butterfly_factors).
    384 -> (16, 24), 1024 -> (32, 32), 128 -> (16, 8), 4096 -> (64, 64)."""
    pf = prime_factors(n)
    return math.prod(pf[0::2]), math.prod(pf[1::2])


def mul_ortho_butterfly(B, p_in, p_out, x):
    """y = M x for the butterfly M = (B, p_in, p_out) of size n (method.py mul_ortho_butterfly): rows permuted by
    p_in; then stage i views the n rows as (prefix, p_i, suffix) with p_i = the i-th butterfly factor and multiplies
    every (prefix, suffix) fibre of length p_i by its own block B[i][prefix*suffix index]; rows permuted by p_out.
    x is (n,) or (n, q). mul_ortho_butterfly(B, p_in, p_out, I) is the dense M."""
    vec = x.dim() == 1
    if vec:
        x = x[:, None]
    n, q = x.shape
    x = x[p_in, :]
    f = butterfly_factors(n)
    for i, p in enumerate(f):
        pre, post = math.prod(f[:i]), math.prod(f[i + 1:])
        x = x.reshape(pre, p, post, q).permute(0, 2, 1, 3).reshape(pre * post, p, q)
        x = B[i] @ x
        x = x.reshape(pre, post, p, q).permute(0, 2, 1, 3).reshape(n, q)
    x = x[p_out, :]
    return x.reshape(n) if vec else x


def random_orthos(count, p, gen, rng):
    """count random p x p rotations (method.py gen_rand_orthos): SO(p) Haar samples from scipy for p > 2 (always
    shaped (count, p, p); scipy drops the batch axis for count == 1, which upstream's broadcasting tolerates), a
    uniform angle for p = 2 as [[cos, sin], [-sin, cos]]; p = 1 (prime n, which upstream cannot do) gives 1."""
    if p == 1:
        return torch.ones(count, 1, 1, dtype=F64)
    if p == 2:
        t = torch.rand(count, generator=gen, dtype=F64) * (2 * math.pi)
        c, s = torch.cos(t), torch.sin(t)
        return torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)
    from scipy.stats import special_ortho_group
    m = special_ortho_group.rvs(p, size=count, random_state=rng)
    return torch.from_numpy(np.asarray(m, dtype=np.float64).reshape(count, p, p))


def random_butterfly(n, gen, rng):
    """(B, p_in, p_out) like method.py gen_rand_ortho_butterfly: the blocks first, then p_in, then p_out."""
    B = [random_orthos(n // p, p, gen, rng) for p in butterfly_factors(n)]
    return B, torch.randperm(n, generator=gen), torch.randperm(n, generator=gen)


def dense_butterfly(bf):
    B, p_in, p_out = bf
    return mul_ortho_butterfly(B, p_in, p_out, torch.eye(len(p_in), dtype=F64))


def linear_rngs(seed, *key):
    """Per-linear torch and numpy generators from (seed, *key), independent of processing order."""
    ss = np.random.SeedSequence([int(seed)] + [int(k) for k in key])
    gen = torch.Generator().manual_seed(int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return gen, np.random.Generator(np.random.PCG64(ss.spawn(1)[0]))


# ---------------------------------------------------------------- QuIP per linear ----
def round_ldl(t, H, maxq, npasses):
    """vector_balance.py round_ldl (eta = 1/2, biased): LDLQ from the last column to the first, then greedy passes."""
    m, n = t.shape
    L = torch.linalg.cholesky(H)  # lower; reads H's lower triangle
    L = L * (1.0 / torch.diagonal(L))[None, :]
    L = L - torch.eye(n, dtype=F64)
    w = t.clone()
    for i in reversed(range(n)):
        # column i of w still holds t_i and L[i,i] ~ 0, so the i-th term of the dot product vanishes
        w[:, i] = torch.clamp(torch.floor(t[:, i] + (t[:, i:] - w[:, i:]) @ L[i:, i] + 0.5), 0, maxq)
    prev = w
    wr = w.clone()
    s = wr - t
    Hn = H / torch.diagonal(H).max()
    for _ in range(npasses):
        for i in reversed(range(n)):
            Hs = s @ Hn[:, i]
            eps = wr[:, i] - torch.round(wr[:, i] - Hs / Hn[i, i])  # torch.round: half to even
            wr[:, i] -= eps
            s[:, i] -= eps
        wr = torch.clamp(wr, 0, maxq)  # s keeps the unclamped residual (upstream)
        if torch.equal(prev, wr):
            break
        prev = wr.clone()
    return wr


def preprocess(W, H, U, V, damp=0.01, d=None):
    """Steps 1-3. W (m, n), H (n, n) as given; returns d (f32-rounded, as f64), W', H'. d overrides step 1's."""
    W = W.to(F64)
    H = H.to(F64)
    n = W.shape[1]
    H = H / H.abs().max()
    if d is None:
        dH = torch.clamp(torch.diagonal(H), min=1e-8)
        dW = torch.clamp((W * W).sum(0), min=1e-8)  # diag(W^T W)
        d = (dH / dW).sqrt().sqrt().clamp(min=1e-8)  # upstream: .sqrt().sqrt()
        d = d.to(torch.float32).to(F64)
    W = W * d[None, :]
    H = H / (d[:, None] * d[None, :])
    eye = torch.eye(n, dtype=F64)
    H = H * (n / (torch.trace(H) + 1e-8)) + 0.01 * eye
    Wp = (U @ W) @ V.T
    Hp = (V @ H) @ V.T
    dead = torch.diagonal(Hp) == 0
    if bool(dead.any()):
        idx = torch.nonzero(dead).flatten()
        Hp[idx, idx] = 1.0
        Wp[:, idx] = 0.0
    Hp = Hp + damp * torch.mean(torch.diagonal(Hp)) * eye
    return d, Wp, Hp


def quip_scale(Wp):
    return float(np.float32(2.4 * math.sqrt(float((Wp * Wp).mean())) + 1e-16))


def quip_linear(W, H, U, V, bits, npasses=1, order="ldlq", damp=0.01, d=None, s=None):
    """Steps 1-6 on one linear. Returns dict(d, s, codes (int64 m x n), Wq (dense f64 effective weight))."""
    U, V = U.to(F64), V.to(F64)
    maxq = 2 ** bits - 1
    d, Wp, Hp = preprocess(W, H, U, V, damp, d)
    if s is None:
        s = quip_scale(Wp)
    t = torch.clamp(((Wp / s) + 1) / 2 * maxq, 0, maxq)
    if order == "ldlqRG":
        p = torch.argsort(torch.diagonal(Hp), stable=True)
        codes = torch.zeros_like(t)
        codes[:, p] = round_ldl(t[:, p], Hp[p][:, p], maxq, npasses)
    elif order == "ldlq":
        codes = round_ldl(t, Hp, maxq, npasses)
    else:
        raise ValueError(f"unknown order {order}")
    return {"d": d, "s": s, "codes": codes.to(torch.int64), "Wq": dequant(codes, s, U, V, d, bits)}


def dequant(codes, s, U, V, d, bits):
    maxq = 2 ** bits - 1
    Wp = (codes.to(F64) / maxq * 2 - 1) * s
    return (U.T.to(F64) @ Wp @ V.to(F64)) / d[None, :]


def proxy(Wq, W, H):
    """tr((Wq - W) H (Wq - W)^T) / tr(W H W^T), H the original (unprocessed) Hessian."""
    W, H = W.to(F64), H.to(F64)
    E = Wq - W
    return float(((E @ H) * E).sum() / ((W @ H) * W).sum())


# ---------------------------------------------------------------- second implementation (synthetic dumps) ----
def np_quip_lazy(W, H, U, V, bits, npasses, order, damp, block=128):
    """The same algorithm in numpy with upstream's lazy-batch formulation (vector_balance.py round_ldl_block):
    columns in blocks of `block`, the feedback split into in-block and after-block dot products. Mathematically
    identical to quip_linear, numerically a different summation order; used to play "lowbit" in synthetic dumps."""
    W, H, U, V = (np.asarray(a, np.float64) for a in (W, H, U, V))
    m, n = W.shape
    maxq = 2 ** bits - 1
    H = H / np.abs(H).max()
    d = np.maximum(np.sqrt(np.sqrt(np.maximum(np.diag(H), 1e-8) / np.maximum(np.einsum("ij,ij->j", W, W), 1e-8))),
                   1e-8).astype(np.float32).astype(np.float64)
    W = W * d
    H = H / np.outer(d, d)
    H = H * (n / (np.trace(H) + 1e-8)) + 0.01 * np.eye(n)
    Wp, Hp = U @ W @ V.T, V @ H @ V.T
    dead = np.diag(Hp) == 0
    Hp[dead, dead] = 1.0
    Wp[:, dead] = 0.0
    Hp += damp * np.mean(np.diag(Hp)) * np.eye(n)
    s = float(np.float32(2.4 * np.sqrt(np.mean(Wp ** 2)) + 1e-16))
    t = np.clip((Wp / s + 1) / 2 * maxq, 0, maxq)
    p = np.argsort(np.diag(Hp), kind="stable") if order == "ldlqRG" else np.arange(n)
    t, Hq = t[:, p], Hp[np.ix_(p, p)]
    L = np.linalg.cholesky(Hq)
    L = L / np.diag(L)[None, :] - np.eye(n)
    w = t.copy()
    for i2 in range(n, 0, -block):
        i1 = max(i2 - block, 0)
        after = (t[:, i2:] - w[:, i2:]) @ L[i2:, i1:i2]
        for i in reversed(range(i1, i2)):
            v = t[:, i] + ((t[:, i1:i2] - w[:, i1:i2]) @ L[i1:i2, i] + after[:, i - i1]) + 0.5
            w[:, i] = np.clip(np.floor(v), 0, maxq)
    sres = w - t
    Hn = Hq / np.diag(Hq).max()
    for _ in range(npasses):
        prev = w.copy()
        for i in reversed(range(n)):
            hs = sres @ Hn[:, i]
            eps = w[:, i] - np.round(w[:, i] - hs / Hn[i, i])
            w[:, i] -= eps
            sres[:, i] -= eps
        w = np.clip(w, 0, maxq)
        if np.array_equal(prev, w):
            break
    codes = np.zeros_like(w)
    codes[:, p] = w
    return d, s, codes.astype(np.int32)


def hadamard(n):
    Hm = np.ones((1, 1))
    while Hm.shape[0] < n:
        Hm = np.block([[Hm, Hm], [Hm, -Hm]])
    assert Hm.shape[0] == n, "Hadamard size must be a power of two"
    return Hm / math.sqrt(n)


def make_synthetic(out, seed=0, bits=2, npasses=1, corrupt=0):
    """A dump like lowbit's for a few linears of the testbed's shapes (and one Hadamard-rotated linear)."""
    rng = np.random.default_rng(seed)
    cases = [("0.self_attn.q_proj", 384, 384, "ldlq", "butterfly"),
             ("0.self_attn.k_proj", 128, 384, "ldlqRG", "butterfly"),
             ("0.mlp.gate_proj", 1024, 384, "ldlq", "butterfly"),
             ("0.mlp.down_proj", 384, 1024, "ldlqRG", "butterfly"),
             ("1.self_attn.v_proj", 128, 256, "ldlq", "hadamard")]
    os.makedirs(out, exist_ok=True)
    for k, (name, m, n, order, rot) in enumerate(cases):
        N = 4 * n
        # correlated, anisotropic inputs with a few outlier channels and one dead input channel
        X = rng.standard_normal((N, n)) @ (rng.standard_normal((n, n)) / math.sqrt(n) + np.eye(n))
        X *= np.exp(rng.standard_normal(n))[None, :]
        X[:, rng.integers(n)] = 0.0
        H = X.T @ X / N
        W = (rng.standard_normal((m, n)) * 0.05 * np.exp(0.5 * rng.standard_normal(m))[:, None]).astype(np.float32)
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        gen, nrng = linear_rngs(seed, 1000 + k)
        if rot == "butterfly":
            bu, bv = random_butterfly(m, gen, nrng), random_butterfly(n, gen, nrng)
            U, V = dense_butterfly(bu).numpy(), dense_butterfly(bv).numpy()
            for tag, (B, pin, pout) in (("U", bu), ("V", bv)):
                np.save(os.path.join(d, f"{tag}_perm_in.npy"), pin.numpy().astype(np.int64))
                np.save(os.path.join(d, f"{tag}_perm_out.npy"), pout.numpy().astype(np.int64))
                np.save(os.path.join(d, f"{tag}_B0.npy"), B[0].numpy())
                np.save(os.path.join(d, f"{tag}_B1.npy"), B[1].numpy())
        else:
            U = hadamard(m) * rng.choice([-1.0, 1.0], m)[None, :]
            V = hadamard(n) * rng.choice([-1.0, 1.0], n)[None, :]
        dv, s, codes = np_quip_lazy(W, H, U, V, bits, npasses, order, 0.01)
        if corrupt and k == 0:
            i, j = rng.integers(m, size=corrupt), rng.integers(n, size=corrupt)
            codes[i, j] = np.where(codes[i, j] > 0, codes[i, j] - 1, codes[i, j] + 1)
        for fn, a in (("W", W), ("H", H), ("U", U), ("V", V), ("d", dv), ("codes", codes)):
            np.save(os.path.join(d, fn + ".npy"), a)
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump({"bits": bits, "scale": s, "npasses": npasses, "order": order, "rotation": rot,
                       "damp": 0.01}, f)
    print(f"wrote synthetic dump of {len(cases)} linears to {out}", flush=True)


# ---------------------------------------------------------------- mode A: per-layer comparison ----
def linear_sort_key(name):
    import ref_quant_model
    layer, _, lin = name.partition(".")
    try:
        return (int(layer), ref_quant_model.LINEARS.index(lin), name)
    except ValueError:
        return (1 << 30, 0, name)


def check_rotation(dirpath, tag, M):
    """max |M M^T - I| and, when the butterfly factors are dumped, max |mul_ortho_butterfly(factors, I) - M|."""
    size = M.shape[0]
    res = {"orth_err": float((M @ M.T - torch.eye(size, dtype=F64)).abs().max())}
    files = [os.path.join(dirpath, f"{tag}_{x}.npy") for x in ("B0", "B1", "perm_in", "perm_out")]
    if all(os.path.exists(f) for f in files):
        B0, B1, pin, pout = (torch.from_numpy(np.load(f)) for f in files)
        p1, p2 = butterfly_factors(size)
        want = [(size // p1, p1, p1), (size // p2, p2, p2)]
        if [tuple(B0.shape), tuple(B1.shape)] != want:
            raise SystemExit(f"{dirpath}: {tag}_B0/B1 shapes {tuple(B0.shape)}, {tuple(B1.shape)}; "
                             f"upstream's butterfly_factors({size}) = ({p1}, {p2}) wants {want}")
        for nm, pp in (("perm_in", pin), ("perm_out", pout)):
            if sorted(pp.tolist()) != list(range(size)):
                raise SystemExit(f"{dirpath}: {tag}_{nm} is not a permutation of 0..{size - 1}")
        dense = mul_ortho_butterfly([B0.to(F64), B1.to(F64)], pin.long(), pout.long(), torch.eye(size, dtype=F64))
        res["butterfly_err"] = float((dense - M).abs().max())
        res["block_orth_err"] = max(float((B @ B.transpose(1, 2) - torch.eye(B.shape[1], dtype=F64)).abs().max())
                                    for B in (B0.to(F64), B1.to(F64)))
    return res


def compare_linear(dirpath):
    meta = json.load(open(os.path.join(dirpath, "meta.json")))
    ld = lambda fn: torch.from_numpy(np.load(os.path.join(dirpath, fn + ".npy")))  # noqa: E731
    W, H, U, V, d_ours, codes_ours = ld("W"), ld("H"), ld("U").to(F64), ld("V").to(F64), ld("d").to(F64), ld("codes")
    bits, npasses, order = int(meta["bits"]), int(meta.get("npasses", 1)), meta.get("order", "ldlq")
    damp = float(meta.get("damp", 0.01))
    s_ours = float(meta["scale"])
    m, n = W.shape
    r = {"shape": [m, n], "bits": bits, "order": order, "npasses": npasses, "rotation": meta.get("rotation"),
         "damp": damp, "U": check_rotation(dirpath, "U", U), "V": check_rotation(dirpath, "V", V)}
    t0 = time.time()
    ref = quip_linear(W, H, U, V, bits, npasses, order, damp)
    r["seconds"] = time.time() - t0
    r["d_max_rel_diff"] = float(((ref["d"] - d_ours).abs() / ref["d"]).max())
    r["s_rel_diff"] = abs(ref["s"] - s_ours) / ref["s"]
    diff = ref["codes"] != codes_ours.to(torch.int64)
    r["codes_differ"] = int(diff.sum())
    r["rows_differ"] = int(diff.any(1).sum())
    # The reference's own codes, (m, n) uint8 row-major, for fixtures (tests/quant/methods/quip_test.cpp).
    r["ref_codes_sha256"] = hashlib.sha256(ref["codes"].to(torch.uint8).contiguous().numpy().tobytes()).hexdigest()
    r["ref_scale"] = ref["s"]
    maxq = 2 ** bits - 1
    r["ours_codes_out_of_range"] = int(((codes_ours < 0) | (codes_ours > maxq)).sum())
    if r["codes_differ"]:
        cols = torch.nonzero(diff.any(0)).flatten()
        if order == "ldlqRG":  # report the first column in processing order (ascending diag H', last first)
            _, _, Hp = preprocess(W, H, U, V, damp, ref["d"])
            rank = torch.empty(n, dtype=torch.int64)
            rank[torch.argsort(torch.diagonal(Hp), stable=True)] = torch.arange(n)
            r["first_diff_col"] = int(cols[torch.argmax(rank[cols])])
        else:
            r["first_diff_col"] = int(cols.max())
    if r["d_max_rel_diff"] > 0 or r["s_rel_diff"] > 0:
        # the rounding step alone, given lowbit's d and s: separates step 1/4 differences from step 5 ones
        given = quip_linear(W, H, U, V, bits, npasses, order, damp, d=d_ours, s=s_ours)
        r["codes_differ_given_ours_d_s"] = int((given["codes"] != codes_ours.to(torch.int64)).sum())
    r["proxy_ref"] = proxy(ref["Wq"], W, H)
    r["proxy_ours"] = proxy(dequant(codes_ours, s_ours, U, V, d_ours, bits), W, H)
    return r


def run_layers(a):
    if a.make_synthetic:
        make_synthetic(a.make_synthetic, a.seed, a.bits, a.npasses, a.corrupt)
        a.dumpdir = a.dumpdir or a.make_synthetic
    if not a.dumpdir:
        raise SystemExit("layers: DUMPDIR or --make-synthetic DIR")
    names = sorted((x for x in os.listdir(a.dumpdir) if os.path.exists(os.path.join(a.dumpdir, x, "meta.json"))),
                   key=linear_sort_key)
    if not names:
        raise SystemExit(f"{a.dumpdir}: no <linear>/meta.json")
    out, bad = {}, 0
    for name in names:
        r = compare_linear(os.path.join(a.dumpdir, name))
        out[name] = r
        rot = "".join(f" {t}:orth {r[t]['orth_err']:.1e}" + (f" bfly {r[t]['butterfly_err']:.1e}"
                                                               if "butterfly_err" in r[t] else "") for t in "UV")
        extra = ""
        if "codes_differ_given_ours_d_s" in r:
            extra += f" (given lowbit's d,s: {r['codes_differ_given_ours_d_s']})"
        if "first_diff_col" in r:
            extra += f" first col {r['first_diff_col']}"
        print(f"{name:<22} {r['shape'][0]}x{r['shape'][1]} w{r['bits']} {r['order']} np{r['npasses']} "
              f"{r['rotation']}{rot} | d rel {r['d_max_rel_diff']:.1e} s rel {r['s_rel_diff']:.1e} | codes differ "
              f"{r['codes_differ']}/{r['shape'][0] * r['shape'][1]} rows {r['rows_differ']}{extra} | proxy lowbit "
              f"{r['proxy_ours']:.6f} ref {r['proxy_ref']:.6f} | {r['seconds']:.1f} s", flush=True)
        bad += r["codes_differ"] > 0 or r["ours_codes_out_of_range"] > 0
    tot = sum(r["codes_differ"] for r in out.values())
    print(f"{len(names)} linears, {bad} with differing codes, {tot} codes differ in all", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"generator": "tools/ref_quip.py layers", "dumpdir": os.path.abspath(a.dumpdir),
                       "linears": out}, f, indent=1)
            f.write("\n")
    return 1 if bad and a.strict else 0


# ---------------------------------------------------------------- mode B: whole model ----
class SumHessians:
    """H[name] = sum over all captured rows x of x x^T in float64 (shared inputs multiplied once); N counts rows."""

    def __init__(self, names):
        self.names = set(names)
        self.H, self.N = {}, {}
        self._last = (None, None)

    def __call__(self, name, inp):
        if name not in self.names:
            return
        if self._last[0] is not inp:
            x = inp.to(F64)
            self._last = (inp, x.T @ x)
        xtx = self._last[1]
        if name not in self.H:
            self.H[name] = torch.zeros_like(xtx)
            self.N[name] = 0
        self.H[name] += xtx
        self.N[name] += inp.shape[0]

    def mean(self, name):
        return self.H[name] / self.N[name]


@torch.no_grad()
def quantize_model(model, a):
    """ref_quant_model.quantize_model's sequential pipeline with QuIP per linear (upstream llama.py: hooks collect H
    over all windows for a group, each linear is pre-processed and rounded, the layer's outputs are recomputed with
    the quantized weights; --true-sequential groups q,k,v / o / gate,up / down like upstream)."""
    import ref_quant_model
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
            hs = SumHessians(group)
            for x in xs:
                model.block(l, x, tables, w=w, hook=hs)
            for name in group:
                k = f"model.layers.{l}.{name}.weight"
                W = w[k]
                m, n = W.shape
                gen, rng = linear_rngs(a.seed, l, ref_quant_model.LINEARS.index(name))
                U = dense_butterfly(random_butterfly(m, gen, rng))
                V = dense_butterfly(random_butterfly(n, gen, rng))
                H = hs.mean(name)
                r = quip_linear(W, H, U, V, a.wbits, a.npasses, a.order, a.damp)
                stats[f"{l}.{name}"] = {"proxy": proxy(r["Wq"], W, H), "scale": r["s"]}
                if a.verbose:
                    ref_quant_model.print_rel_err(l, name, W, r["Wq"].float())
                    print(f"  {l} {name:<18} proxy {stats[f'{l}.{name}']['proxy']:.6f}", file=sys.stderr)
                w[k] = r["Wq"].to(W.dtype)
        xs = [model.block(l, x, tables, w=w) for x in xs]
        print(f"  layer {l}: {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    return w, stats


def run_model(a):
    import ref_quant_model
    import ref_score
    model = ref_score.Llama(a.model)
    t0 = time.time()
    w, stats = quantize_model(model, a)
    tq = time.time() - t0
    label = f"quip w{a.wbits} {a.order} np{a.npasses} seed{a.seed}{' true-seq' if a.true_sequential else ''}"
    print(f"ref {label}: quantized in {tq:.0f} s", flush=True)
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
        meta = {"generator": "tools/ref_quip.py model", "model": a.model, "wbits": a.wbits, "order": a.order,
                "npasses": a.npasses, "seed": a.seed, "true_sequential": a.true_sequential, "damp": a.damp,
                "nsamples": int(calib.shape[0]), "calib_seqlen": int(calib.shape[1]), "seqlen": a.seqlen,
                "max_windows": a.max_windows, "quantize_seconds": tq, "eval_seconds": times}
        with open(a.json, "w") as f:
            json.dump({"settings": meta, "ppl": out, "linears": stats}, f, indent=1)
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
    la.add_argument("--seed", type=int, default=0)
    la.add_argument("--bits", type=int, default=2, help="(synthetic)")
    la.add_argument("--npasses", type=int, default=1, help="(synthetic)")
    la.add_argument("--corrupt", type=int, default=0, help="(synthetic) change this many codes of the first linear")
    la.add_argument("--strict", action="store_true", help="exit 1 when any code differs")
    mo = sub.add_parser("model", help="whole-model QuIP + perplexity")
    mo.add_argument("--model", required=True)
    mo.add_argument("--tokens", required=True, help="directory written by quant_eval --dump-tokens")
    mo.add_argument("--wbits", type=int, choices=[2, 3, 4], required=True)
    mo.add_argument("--order", choices=["ldlq", "ldlqRG"], default="ldlq")
    mo.add_argument("--npasses", type=int, default=1, help="greedy passes after LDLQ (upstream llama.py: 1)")
    mo.add_argument("--seed", type=int, default=0)
    mo.add_argument("--damp", type=float, default=0.01, help="percdamp: fraction of mean(diag H') added")
    mo.add_argument("--true-sequential", action="store_true")
    mo.add_argument("--eval", default="wikitext2")
    mo.add_argument("--seqlen", type=int, default=2048)
    mo.add_argument("--max-windows", type=int, default=0)
    mo.add_argument("--verbose", action="store_true", help="print each linear's relative error and proxy loss")
    mo.add_argument("--json", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sys.exit(run_layers(a) if a.mode == "layers" else run_model(a))


if __name__ == "__main__":
    main()
