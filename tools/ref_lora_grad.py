#!/usr/bin/env python3
"""Independent gradient reference for lowbit's training engine (issue 27): the LLaMA forward of HF's
LlamaForCausalLM in float32 with LoRA adapters (PEFT's LoraLayer: y = W x + (alpha/r) B A x) and, optionally,
IR-QLoRA's IEC (htqin/IR-QLoRA utils.py IRQLoraLinear4bit.forward), differentiated by torch.autograd.

It rebuilds, from the same counter-based hash as src/train/rng.h, the batch and adapters that
tests/train/testbed_lora_grad_test.cpp uses, and writes the loss and a summary of every adapter gradient
(its norm, its projection on a hash-random direction, a few sampled entries) to a JSON the C++ test reads:

  /usr/bin/python3 tools/ref_lora_grad.py --model ../shared/models/testbed-25m \
      --refs ../shared/refs/testbed-25m.json --out tests/train/testbed_lora_grad_ref.json
  /usr/bin/python3 tools/ref_lora_grad.py ... --compare DUMP   # every gradient entry against lowbit's dump
(lowbit writes DUMP when LOWBIT_DUMP_LORA_GRADS=DUMP is set for the C++ test: raw float32 in the order below.)

Batch (shared with the C++ test): the 64 golden wikitext token ids of refs/testbed-25m.json cut into
sequences [0, 40) and [40, 64); labels = the next token inside each sequence, none at its last position, and
the first 10 positions of the first sequence ignored (a prompt without loss). Loss = scale * sum of CE with
scale = 1 / (number of labelled positions).
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_score import load_safetensors  # noqa: E402

M64 = (1 << 64) - 1
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def mix64(x):  # SplitMix64's finaliser, as src/train/rng.h
    x = (x + 0x9e3779b97f4a7c15) & M64
    x = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & M64
    x = ((x ^ (x >> 27)) * 0x94d049bb133111eb) & M64
    return x ^ (x >> 31)


def subkey(key, label):
    return mix64(key ^ mix64((label + 0x632be59bd9b4e019) & M64))


def uniform01(key, n):  # uniform01(key, i) for i in [0, n), as float64
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        out[i] = (mix64(key ^ mix64(i)) >> 11) * 2.0 ** -53
    return out


# The variants the C++ test checks: (name, iec). Adapters: rank R on every linear; A as LoraSet initialises it
# from SEED (U(-1/sqrt(in), 1/sqrt(in))), B = 0.05 * U(-1, 1) from B_SEED (non-zero, so A has a gradient),
# beta_a/beta_b (IEC) = 0.1 * U(-1, 1) from B_SEED's second stream.
# The reference runs in float64 (--dtype): the exact answer that lowbit's float32 arithmetic is measured against.
# (torch's own float32 run is itself ~1e-6 relative off it in the loss: --dtype float32 shows it.)
DTYPE = torch.float64
R, SEED, B_SEED, PROJ_SEED, SAMPLE_SEED, N_SAMPLES = 8, 1234, 99, 777, 555, 8
# (name, IEC, base): the base as loaded, or every block linear through NF4 with double quantization (QLoRA's
# base), or NF4 with ICQ (IR-QLoRA's), dequantized by tools/ref_nf4.py's independent bitsandbytes port.
VARIANTS = [("dense", False, "dense"), ("dense_iec", True, "dense"), ("nf4", False, "nf4"),
            ("nf4_icq_iec", True, "nf4_icq")]


def nf4_base(w, n_layer, icq):
    """The dequantized NF4 (+ICQ) weights of every block linear, as bitsandbytes' dequantize_4bit computes them:
    NF4[code] * absmax with absmax = map[q] * absmax2 + offset (two f32 roundings), plus tau = map[t] * tau2."""
    import ref_nf4 as r
    f32 = np.float32
    out = dict(w)
    for l in range(n_layer):
        for name in LINEARS:
            key = f"model.layers.{l}.{name}.weight"
            W = w[key].to(torch.float32).numpy()
            blocks = W.reshape(-1, 64).astype(f32)
            tau = None
            if icq:
                _, tau, codes, tau_q, tau2 = r.icq(blocks)
                _, absmax = r.quantize_4bit(blocks - tau[:, None])
                tau = (r.MAP[tau_q] * np.repeat(tau2, 256)[:len(tau_q)]).astype(f32)
            else:
                codes, absmax = r.quantize_4bit(blocks)
            q, absmax2, offset = r.double_quant(absmax)
            a = (r.MAP[q] * np.repeat(absmax2, 256)[:len(q)]).astype(f32) + f32(offset)
            deq = (r.NF4_32[codes] * a[:, None]).astype(f32)
            if icq:
                deq = (deq + tau[:, None]).astype(f32)
            out[key] = torch.from_numpy(deq.reshape(W.shape)).to(DTYPE)
    return out


def adapters(w, n_layer, iec):
    out = {}
    for l in range(n_layer):
        for k, name in enumerate(LINEARS):
            W = w[f"model.layers.{l}.{name}.weight"]
            o, i = W.shape
            idx = l * 7 + k
            bound = 1.0 / math.sqrt(i)
            A = ((2 * uniform01(subkey(SEED, idx), R * i) - 1) * bound).astype(np.float32).reshape(R, i)
            bkey = subkey(B_SEED, idx)
            B = (0.05 * (2 * uniform01(bkey, o * R) - 1)).astype(np.float32).reshape(o, R)
            betas = (0.1 * (2 * uniform01(subkey(bkey, 1), 2) - 1)).astype(np.float32) if iec else np.zeros(2, np.float32)
            out[(l, name)] = {k2: torch.tensor(v, dtype=DTYPE, requires_grad=True) for k2, v in
                              (("A", A), ("B", B), ("beta_a", betas[:1]), ("beta_b", betas[1:]))}
    return out


def lora_linear(x, W, ad, scale, iec):
    """HF/PEFT LoRA; with IEC the IR-QLoRA elastic connection (chunk means of x into h, h repeated into u).
    With IEC, hooks add to ad["abs_a"] / ad["abs_b"] the sums of |terms| of d/dbeta_a = sum dh * chunkmean(x)
    and d/dbeta_b = sum du * repeat(h): the condition scale of those cancelling sums."""
    y = x @ W.T
    h = x @ ad["A"].T
    r = ad["A"].shape[0]
    if iec:
        cm = x.reshape(x.shape[0], r, -1).mean(-1)
        h = h + ad["beta_a"] * cm
        cmd, hd = cm.detach(), h.detach()
        h.register_hook(lambda g: ad.__setitem__("abs_a", ad.get("abs_a", 0.0) + float((g * cmd).abs().sum())))
    u = h @ ad["B"].T
    if iec:
        u = (u.reshape(x.shape[0], r, -1) + ad["beta_b"] * h.unsqueeze(-1)).reshape(x.shape[0], -1)
        u.register_hook(lambda g: ad.__setitem__(
            "abs_b", ad.get("abs_b", 0.0) + float((g.reshape(x.shape[0], r, -1) * hd.unsqueeze(-1)).abs().sum())))
    return y + scale * u


def forward_loss(w, cfg, ads, seqs, iec):
    d, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or d // nh
    eps = cfg["rms_norm_eps"]
    # RoPE's angles in float32 as HF computes them (lowbit too), whatever the dtype of the rest.
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    scale = 16.0 / R  # alpha 16 over rank R, as the C++ test configures it
    n_targets = sum(int((lab != -100).sum()) for _, lab in seqs)

    def norm(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    def rope(x, cos, sin):
        h = hd // 2
        return x * cos + torch.cat([-x[..., h:], x[..., :h]], dim=-1) * sin

    total = 0.0
    for ids, lab in seqs:
        T = len(ids)
        freqs = torch.outer(torch.arange(T).float(), inv_freq)
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos().to(DTYPE), emb.sin().to(DTYPE)
        mask = torch.full((T, T), float("-inf"), dtype=DTYPE).triu(1)
        x = w["model.embed_tokens.weight"][torch.tensor(ids)]
        for l in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{l}."

            def lin(name, inp):
                return lora_linear(inp, w[p + name + ".weight"], ads[(l, name)], scale, iec)

            h = norm(x, w[p + "input_layernorm.weight"])
            q = lin("self_attn.q_proj", h).view(T, nh, hd).transpose(0, 1)
            k = lin("self_attn.k_proj", h).view(T, nkv, hd).transpose(0, 1)
            v = lin("self_attn.v_proj", h).view(T, nkv, hd).transpose(0, 1)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            k, v = k.repeat_interleave(nh // nkv, 0), v.repeat_interleave(nh // nkv, 0)
            att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + mask, dim=-1) @ v
            x = x + lin("self_attn.o_proj", att.transpose(0, 1).reshape(T, -1))
            h = norm(x, w[p + "post_attention_layernorm.weight"])
            x = x + lin("mlp.down_proj", torch.nn.functional.silu(lin("mlp.gate_proj", h)) * lin("mlp.up_proj", h))
        logits = norm(x, w["model.norm.weight"]) @ head.T
        total = total + torch.nn.functional.cross_entropy(logits, torch.tensor(lab), ignore_index=-100,
                                                          reduction="sum")
    return total, n_targets


def batch(refs):
    ids = refs["golden"]["input_ids"][:64]
    seqs = []
    for a, b in ((0, 40), (40, 64)):
        s = list(ids[a:b])
        lab = np.array(s[1:] + [-100], dtype=np.int64)
        if a == 0:
            lab[:10] = -100
        seqs.append((s, lab))
    return seqs


def tensors_in_order(ads, n_layer, iec):
    """Every trainable tensor in lowbit's LoraSet::entries() order: per layer, per linear: A, B (beta_a, beta_b),
    with the condition scale of the betas' gradients (None for A and B)."""
    out = []
    for l in range(n_layer):
        for name in LINEARS:
            ad, p = ads[(l, name)], f"model.layers.{l}.{name}."
            out += [(p + "lora_A", ad["A"], None), (p + "lora_B", ad["B"], None)]
            if iec:
                out += [(p + "beta_a", ad["beta_a"], ad["abs_a"]), (p + "beta_b", ad["beta_b"], ad["abs_b"])]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--refs", required=True)
    ap.add_argument("--out")
    ap.add_argument("--compare", help="lowbit's raw float32 dump of every gradient, per variant: DUMP.<variant>")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    a = ap.parse_args()
    global DTYPE
    DTYPE = getattr(torch, a.dtype)
    torch.set_num_threads(2)
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    w = {k: v.to(DTYPE) for k, v in load_safetensors(a.model).items()}
    refs = json.load(open(a.refs))
    seqs = batch(refs)
    result = {"rank": R, "alpha": 16, "seed": SEED, "b_seed": B_SEED, "proj_seed": PROJ_SEED,
              "sample_seed": SAMPLE_SEED, "computed_with": f"torch {torch.__version__} {a.dtype} autograd",
              "variants": {}}
    for vname, iec, base in VARIANTS:
        wb = w if base == "dense" else nf4_base(w, cfg["num_hidden_layers"], base == "nf4_icq")
        ads = adapters(wb, cfg["num_hidden_layers"], iec)
        total, n_targets = forward_loss(wb, cfg, ads, seqs, iec)
        loss = total / n_targets
        loss.backward()
        entries = []
        flat = []
        for tid, (tname, t, abs_sum) in enumerate(tensors_in_order(ads, cfg["num_hidden_layers"], iec)):
            g = t.grad.detach().double().reshape(-1).numpy()
            flat.append(g)
            u = 2 * uniform01(subkey(PROJ_SEED, tid), g.size) - 1
            idx = [mix64(subkey(SAMPLE_SEED, tid) ^ j) % g.size for j in range(N_SAMPLES)]
            entries.append({"name": tname, "size": int(g.size), "norm": float(np.linalg.norm(g)),
                            "proj": float(g @ u), "max_abs": float(np.abs(g).max()),
                            "samples": [[int(i), float(g[i])] for i in idx]})
            if abs_sum is not None:
                entries[-1]["abs_sum"] = abs_sum
        result["variants"][vname] = {"loss": float(loss.item()), "n_targets": n_targets, "base": base,
                                     "tensors": entries}
        print(f"{vname}: loss {loss.item():.9f} over {n_targets} targets, {len(entries)} tensors")
        if a.compare:
            mine = np.fromfile(f"{a.compare}.{vname}", dtype=np.float32).astype(np.float64)
            ref = np.concatenate(flat)
            if mine.size != ref.size:
                sys.exit(f"{a.compare}.{vname}: {mine.size} values, expected {ref.size}")
            off, worst = 0, 0.0
            for e, g in zip(entries, flat):
                err = np.abs(mine[off:off + g.size] - g).max() / max(np.abs(g).max(), 1e-30)
                worst = max(worst, err)
                off += g.size
            print(f"  every entry: largest |lowbit - torch| / max|torch grad| per tensor = {worst:.3e}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
