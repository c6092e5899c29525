#!/usr/bin/python3
"""Independent NumPy reference for lowbit's nf4 method (src/quant/methods/nf4.cpp, src/formats/nf4.h).

Re-implements, from the upstream code's semantics and without reading lowbit's C++:
  * bitsandbytes functional.quantize_4bit(quant_type="nf4", blocksize=64) as its CUDA kernel computes it
    (kQuantizeBlockwise<NF4>: absmax per block of 64, x = w * (1/absmax) in f32, dQuantizeNF4's decision
    tree = the number of f32 midpoints t with x > t; codes packed two per byte, the first in the high nibble);
  * compress_statistics=True: offset = mean(absmax), (absmax - offset) by quantize_blockwise(blocksize=256)
    on create_dynamic_map(signed=True) with kQuantizeBlockwise<General8bit>'s dQuantize<0> binary search;
  * IR-QLoRA (htqin/IR-QLoRA utils.py) `search` / `nf4_quant` / `evaluate_entropy`: per block the lower median
    tau0, A = max|w - tau0|, 2n+1 shifts tau = f32(f)*A + tau0 for f in np.linspace(-lam*sigma, lam*sigma),
    the shift whose 16-code histogram has the largest entropy (exact comparison; the earliest wins ties),
    then tau stored as argmin |tau/tau2 - map| with tau2 = max|tau| per 256 blocks.
It reads testbed-25m's bf16 safetensors (bf16 -> f32 by a 16-bit shift) and writes, per linear, SHA-256s of
the codes, the double-quantized absmax, and ICQ's chosen candidate index, codes and 8-bit tau, plus a few
values, into the JSON that tests/quant/methods/nf4_test.cpp and tests/formats/nf4_test.cpp compare lowbit against.

Run with Debian's python3 (python3-numpy; python3-torch only for an informational comparison):
  /usr/bin/python3 tools/ref_nf4.py /work/shared/models/testbed-25m tests/formats/nf4_ref.json
"""
import hashlib
from fractions import Fraction
import json
import math
import os
import statistics
import sys
import time

import numpy as np

f32 = np.float32

# bitsandbytes functional.get_4bit_type("nf4").
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float64)
# The literals of csrc/kernels.cu dQuantizeNF4, in ascending order.
TREE = [-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
        -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
        0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683, 0.5016634166240692,
        0.6427869200706482, 0.8614784181118011]


def f32_of_decimal(text):
    """The f32 nearest to a decimal literal, ties to even, as a C/CUDA compiler reads `0.1f` (np.float32(0.1)
    would round twice: to double, then to f32)."""
    exact = Fraction(text)
    c = f32(float(exact))
    cands = [np.nextafter(c, f32(-2)), c, np.nextafter(c, f32(2))]
    dist = [abs(Fraction(float(v)) - exact) for v in cands]
    best = min(dist)
    ties = [v for v, d in zip(cands, dist) if d == best]
    return ties[0] if len(ties) == 1 else [v for v in ties if v.view(np.uint32) % 2 == 0][0]


THRESH = np.array([f32_of_decimal(repr(t)) for t in TREE], dtype=f32)
MIDS = [(NF4[k] + NF4[k + 1]) / 2 for k in range(15)]
assert TREE == MIDS, "the tree's literals are the double midpoints of the values"
NF4_32 = NF4.astype(f32)


def nf4_codes(x):
    """dQuantizeNF4 on f32 x: #thresholds below x (x > t); NaN (0*inf) -> 0 as the tree's comparisons fail.
    The thresholds are the kernel's literals as the compiler rounds them, which for 4 of the 15 (midpoints that
    are exact ties between two floats) is not the round-to-even f32 of the double midpoint."""
    q = np.searchsorted(THRESH, x, side="left").astype(np.uint8)
    q[np.isnan(x)] = 0
    return q


def quantize_4bit(blocks):
    """blocks (nb, 64) f32 -> codes (nb, 64) uint8, absmax (nb) f32."""
    absmax = np.abs(blocks).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = f32(1.0) / absmax
        x = blocks * r[:, None]
    return nf4_codes(x), absmax


def pack(codes):
    flat = codes.reshape(-1)
    return ((flat[0::2] << 4) | flat[1::2]).astype(np.uint8)


def torch_linspace_f32(start, end, steps):
    """torch.linspace on the CPU in f32 (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp linspace_kernel,
    PyTorch >= 2.1): step = (end - start) / (steps - 1) in f32; first half start + step*i, second half
    end - step*(steps - i - 1)."""
    s, e = f32(start), f32(end)
    step = f32((e - s) / f32(steps - 1))
    half = steps // 2
    return np.array([s + step * f32(i) if i < half else e - step * f32(steps - i - 1) for i in range(steps)],
                    dtype=f32)


def dynamic_map():
    """bitsandbytes functional.create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)."""
    data = []
    for i in range(7):
        b = torch_linspace_f32(0.1, 1, 2 ** i + 1)
        means = (b[:-1] + b[1:]) / f32(2.0)
        scale = f32(10 ** (-(7 - 1) + i))  # a Python scalar times an f32 tensor: rounded to f32 first
        data += [float(v) for v in scale * means]
        data += [float(v) for v in f32(-scale) * means]
    data += [0.0, 1.0]
    assert len(data) == 256
    data.sort()
    return np.array(data, dtype=f32)


MAP = dynamic_map()


def dquantize(x):
    """kQuantizeBlockwise<General8bit>'s dQuantize<0>(code, 0, x), vectorised over x (f32)."""
    n = x.shape[0]
    pivot = np.full(n, 127, np.int64)
    upper_p = np.full(n, 255, np.int64)
    lower_p = np.zeros(n, np.int64)
    lower = np.full(n, f32(-1.0), f32)
    upper = np.full(n, f32(1.0), f32)
    val = MAP[pivot]
    for i in (64, 32, 16, 8, 4, 2, 1):
        gt = x > val
        lower_p = np.where(gt, pivot, lower_p)
        lower = np.where(gt, val, lower)
        upper_p = np.where(gt, upper_p, pivot)
        upper = np.where(gt, upper, val)
        pivot = np.where(gt, pivot + i, pivot - i)
        val = MAP[pivot]
    upper = np.where(upper_p == 255, MAP[255], upper)
    lower = np.where(lower_p == 0, MAP[0], lower)
    gt = x > val
    mid_u = (upper + val) * f32(0.5)
    mid_l = (lower + val) * f32(0.5)
    return np.where(gt, np.where(x > mid_u, upper_p, pivot), np.where(x < mid_l, lower_p, pivot)).astype(np.uint8)


def per_super(v, fn):
    """fn over consecutive groups of 256 entries of v (the last may be shorter), concatenated."""
    return [fn(v[s:s + 256]) for s in range(0, len(v), 256)]


def double_quant(absmax):
    # The mean: summed in float64 in index order (cumsum is sequential), rounded to f32 once.
    offset = f32(np.cumsum(absmax.astype(np.float64))[-1] / len(absmax))
    v = absmax - offset
    absmax2 = np.array(per_super(v, lambda g: np.abs(g).max()), dtype=f32)
    q = np.empty(len(v), np.uint8)
    for s in range(len(absmax2)):
        g = v[s * 256:(s + 1) * 256]
        with np.errstate(divide="ignore", invalid="ignore"):
            q[s * 256:s * 256 + len(g)] = dquantize(g * (f32(1.0) / absmax2[s]))
    return q, absmax2, offset


# ---- ICQ ----
def icq_sigma():
    # utils.py: 1 / norm.ppf(torch.linspace(0.9677083, 0.5, 9)[:-1]).tolist()[0]: ppf of the f32 entry, which
    # scipy returns as f32 for f32 input.
    return 1.0 / float(f32(statistics.NormalDist().inv_cdf(float(f32(0.9677083)))))


def entropy_terms():
    """c*log2(c) for c in 0..64 in units of 2^-40 built from c's prime factors (one rounded log2 per prime), so
    that equal entropies have equal sums of these integers (e.g. counts {4,1,1,1,1} and {2,2,2,2})."""
    lp = {p: round(math.log2(p) * 2 ** 40) for p in range(2, 65) if all(p % d for d in range(2, p))}
    out = [0] * 65
    for c in range(2, 65):
        m, s = c, 0
        for p in sorted(lp):
            while m % p == 0:
                s += c * lp[p]
                m //= p
        out[c] = s
    return np.array(out, dtype=np.int64)


TERMS = entropy_terms()


def icq(blocks, lam=0.1, n=100):
    """IR-QLoRA search over blocks (nb, 64) f32: chosen index (nb) int32, tau (nb) f32, and the codes of
    blocks - tau."""
    nb = blocks.shape[0]
    tau0 = np.sort(blocks, axis=1)[:, 31]  # torch.median: the lower median
    a = np.abs(blocks - tau0[:, None]).max(axis=1)
    factors = np.linspace(-lam * icq_sigma(), lam * icq_sigma(), 2 * n + 1)
    rows = np.arange(nb) * 16
    best_key = best_idx = best_tau = None
    for k, f in enumerate(factors):
        tau = f32(f) * a + tau0
        codes, _ = quantize_4bit(blocks - tau[:, None])
        counts = np.bincount((codes.astype(np.int64) + rows[:, None]).reshape(-1), minlength=nb * 16)
        key = TERMS[counts.reshape(nb, 16)].sum(axis=1)  # smaller = larger entropy
        if best_key is None:
            best_key, best_idx, best_tau = key, np.zeros(nb, np.int32), tau
        else:
            better = key < best_key
            best_key = np.where(better, key, best_key)
            best_idx = np.where(better, k, best_idx).astype(np.int32)
            best_tau = np.where(better, tau, best_tau)
    codes, _ = quantize_4bit(blocks - best_tau[:, None])
    tau2 = np.array(per_super(best_tau, lambda g: np.abs(g).max()), dtype=f32)
    x = best_tau / np.repeat(tau2, 256)[:nb]
    with np.errstate(invalid="ignore"):
        tau_q = np.argmin(np.abs(x[:, None] - MAP[None, :]), axis=1).astype(np.uint8)
    return best_idx, best_tau, codes, tau_q, tau2


# ---- testbed ----
def load_bf16_linears(model_dir):
    idx = json.load(open(os.path.join(model_dir, "model.safetensors.index.json")))["weight_map"]
    headers = {}
    out = {}
    for name, shard in idx.items():
        if ".layers." not in name or not name.endswith("_proj.weight"):
            continue
        path = os.path.join(model_dir, shard)
        if path not in headers:
            with open(path, "rb") as fh:
                hl = int.from_bytes(fh.read(8), "little")
                headers[path] = (json.loads(fh.read(hl)), 8 + hl)
        h, base = headers[path]
        e = h[name]
        assert e["dtype"] == "BF16"
        b0, b1 = e["data_offsets"]
        with open(path, "rb") as fh:
            fh.seek(base + b0)
            raw = np.frombuffer(fh.read(b1 - b0), dtype="<u2")
        w = (raw.astype(np.uint32) << 16).view(f32).reshape(e["shape"])
        out[name[:-len(".weight")]] = w
    return out


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def torch_map_differences():
    """Entries where the installed PyTorch's linspace gives another dynamic map (informational)."""
    try:
        import torch
    except ImportError:
        return None
    data = []
    for i in range(7):
        b = torch.linspace(0.1, 1, 2 ** i + 1)
        means = (b[:-1] + b[1:]) / 2.0
        data += ((10 ** (-(7 - 1) + i)) * means).tolist()
        data += (-(10 ** (-(7 - 1) + i)) * means).tolist()
    data += [0, 1.0]
    data.sort()
    t = np.array(data, dtype=f32)
    return {"torch": torch.__version__, "differing_entries": int((t != MAP).sum())}


def main():
    model_dir, out_path = sys.argv[1], sys.argv[2]
    linears = load_bf16_linears(model_dir)
    ref = {
        "settings": {"command": "/usr/bin/python3 tools/ref_nf4.py " + " ".join(sys.argv[1:]),
                     "model": os.path.basename(os.path.normpath(model_dir)), "blocksize": 64,
                     "blocksize2": 256, "icq_lambda": 0.1, "icq_n": 100},
        "icq_sigma": icq_sigma(),
        "nf4_thresholds": [float(t) for t in THRESH],
        "dynamic_map": [float(v) for v in MAP],
        "dynamic_map_sha256": sha(MAP.astype("<f4")),
        "installed_torch_dynamic_map": torch_map_differences(),
        "linears": {},
    }
    t0 = time.time()
    for name in sorted(linears):
        w = linears[name]
        blocks = w.reshape(-1, 64)
        codes, absmax = quantize_4bit(blocks)
        q, absmax2, offset = double_quant(absmax)
        idx, tau, icodes, tau_q, tau2 = icq(blocks)
        ref["linears"][name] = {
            "shape": list(w.shape),
            "codes_sha256": sha(pack(codes)),
            "absmax_q_sha256": sha(q),
            "absmax2_sha256": sha(absmax2.astype("<f4")),
            "absmax_offset": float(offset),
            "absmax_f32_sha256": sha(absmax.astype("<f4")),
            "first_codes": [int(c) for c in pack(codes)[:8]],
            "first_absmax_q": [int(c) for c in q[:8]],
            "icq_index_sha256": sha(idx.astype("<i4")),
            "icq_codes_sha256": sha(pack(icodes)),
            "icq_tau_q_sha256": sha(tau_q),
            "icq_tau2_sha256": sha(tau2.astype("<f4")),
            "icq_first_index": [int(i) for i in idx[:8]],
        }
        print(f"{name}: {time.time() - t0:.1f} s", file=sys.stderr)
    with open(out_path, "w") as fh:
        json.dump(ref, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
