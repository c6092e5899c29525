#!/usr/bin/env python3
"""Writes and reads Hugging Face GPTQ (AutoGPTQ / GPTQModel) and AWQ (AutoAWQ GEMM) checkpoints with NumPy
only, from the published layouts, independently of lowbit's C++ (src/formats/gptq_layout.cpp,
src/io/hf_quantized.cpp): a second implementation to check those against.

Layouts (in = I input features, out = O output features, b bits, G groups):
  GPTQ  qweight I32 (I*b/32, O): AutoGPTQ's pack() loop. 2/4/8 bits: word r of a column holds inputs
        r*32/b + j at bit b*j. 3 bits: 32 inputs in 3 words: inputs 0..9 at bits 3j of word 0, input 10 in
        bits 30-31 of word 0 (low two bits) and bit 0 of word 1 (its high bit), inputs 11..20 at bits 3j+1 of
        word 1, input 21 in bit 31 of word 1 (low bit) and bits 0-1 of word 2, inputs 22..31 at bits 3j+2 of
        word 2. qzeros I32 (G, O*b/32) packs the zero-points of a group along the outputs the same way;
        checkpoint_format "gptq" stores Z - 1 (AutoGPTQ's `zeros -= 1`, the kernels add 1 back), "gptq_v2"
        stores Z. scales F16 (G, O); g_idx I32 (I) is each input's group (act-order permutes it).
  AWQ   qweight I32 (I, O/8): 4 bits, packed along the OUTPUTS, nibble j of word w holds output
        8w + [0, 2, 4, 6, 1, 3, 5, 7][j] (AutoAWQ's order); qzeros I32 (G, O/8) the same, zero-points as
        they are; scales F16 (G, O).
  Dense W[o][i] = float32(scale[g][o]) * (float32(q[i][o]) - float32(Z[g][o])), g = g_idx[i] (or i // gs),
  computed in float32 as lowbit's reference dequantizer does, so equal codes give bitwise equal weights.

lowbit's own affine checkpoints (the source of an export): P.qcodes U8 (O, ceil(I*b/8)) an LSB-first
bitstream per row, P.scales F16 (O, G), P.qzeros U8 (O, G), P.g_idx I32 (I) with act-order.

Commands (run with /usr/bin/python3; numpy is the only dependency):
  export SRC OUT --layout gptq|gptq_v2|awq [--no-g-idx] [--quantize-config-json]
      SRC: a lowbit affine checkpoint directory. Writes OUT (config.json with quantization_config, or
      quantize_config.json as old AutoGPTQ did; model.safetensors; tokenizer files copied).
  decode DIR OUT.safetensors    every quantized linear of DIR (GPTQ, AWQ or lowbit affine) as dense F32
  compare A B                   decodes both directories; exit 0 when every linear is bitwise equal
  fixture OUT                   tiny synthetic checkpoints from random codes (tests/io/fixtures/hf_quantized)
  fuzz-seeds OUT                one-linear files for fuzz/hf_quantized_fuzz (fuzz/corpus/hf_quantized)
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
DTYPES = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "U8": np.uint8, "BF16": np.uint16,
          "I64": np.int64, "F64": np.float64, "I16": np.int16, "I8": np.int8}
NAMES = {np.dtype(v): k for k, v in DTYPES.items() if k != "BF16"}
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj"]


# ---- safetensors ----
def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        arr = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
        out[name] = (t["dtype"], arr.copy())
    return out


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: (dtype name, array)}; names sorted, data contiguous, header padded to 8 bytes."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        dt, arr = tensors[name]
        raw = np.ascontiguousarray(arr).astype(DTYPES[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_model(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else [
        "model.safetensors"]
    out = {}
    for fn in files:
        out.update(read_safetensors(os.path.join(d, fn)))
    return out


def in_features(cfg, linear):
    hd = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    if linear.endswith("o_proj"):
        return cfg["num_attention_heads"] * hd
    if linear.endswith("down_proj"):
        return cfg["intermediate_size"]
    return cfg["hidden_size"]


def linear_prefixes(cfg):
    return ["model.layers.%d.%s" % (l, n) for l in range(cfg["num_hidden_layers"]) for n in LINEARS]


# ---- lowbit affine: codes (O, I), scales (O, G) f16, zeros (O, G), g_idx (I) ----
class Affine:
    def __init__(self, bits, q, scales, zeros, g_idx):
        self.bits, self.q, self.scales, self.zeros, self.g_idx = bits, q, scales, zeros, g_idx

    def group_size(self):
        return self.q.shape[1] // self.scales.shape[1]

    def groups(self):  # each input's group
        return self.g_idx if self.g_idx is not None else np.arange(self.q.shape[1]) // self.group_size()

    def dense(self):
        g = self.groups()
        s = self.scales.astype(np.float32)[:, g]
        z = self.zeros.astype(np.float32)[:, g]
        return (s * (self.q.astype(np.float32) - z)).astype(np.float32)


def read_lowbit_affine(t, p, I):
    codes = t[p + ".qcodes"][1]
    O, rb = codes.shape
    bits = next(b for b in range(2, 9) if (I * b + 7) // 8 == rb)
    stream = np.unpackbits(codes, axis=1, bitorder="little")[:, :I * bits].reshape(O, I, bits)
    q = (stream.astype(np.uint32) << np.arange(bits, dtype=np.uint32)).sum(axis=2).astype(np.uint32)
    g = t[p + ".g_idx"][1].astype(np.int64) if p + ".g_idx" in t else None
    return Affine(bits, q, t[p + ".scales"][1].astype(np.float16), t[p + ".qzeros"][1].astype(np.uint32), g)


def write_lowbit_affine(a):
    O, I = a.q.shape
    bits = np.zeros((O, I, a.bits), dtype=np.uint8)
    for k in range(a.bits):
        bits[:, :, k] = (a.q >> k) & 1
    rb = (I * a.bits + 7) // 8
    flat = np.zeros((O, rb * 8), dtype=np.uint8)
    flat[:, :I * a.bits] = bits.reshape(O, I * a.bits)
    out = {".qcodes": ("U8", np.packbits(flat, axis=1, bitorder="little")), ".scales": ("F16", a.scales),
           ".qzeros": ("U8", a.zeros.astype(np.uint8))}
    if a.g_idx is not None:
        out[".g_idx"] = ("I32", a.g_idx.astype(np.int32))
    return out


# ---- GPTQ packing along the first axis of x (K, N) uint32 codes -> (K*b/32, N) words ----
def gptq_pack(x, b):
    x = x.astype(np.uint32)
    K = x.shape[0]
    if b in (2, 4, 8):
        per = 32 // b
        out = np.zeros((K // per,) + x.shape[1:], dtype=np.uint32)
        for r in range(K // per):
            for j in range(per):
                out[r] |= x[r * per + j] << np.uint32(b * j)
        return out
    assert b == 3 and K % 32 == 0
    out = np.zeros((K // 32 * 3,) + x.shape[1:], dtype=np.uint32)
    for blk in range(K // 32):
        v, w = x[blk * 32:(blk + 1) * 32], out[blk * 3:(blk + 1) * 3]
        for j in range(10):
            w[0] |= v[j] << np.uint32(3 * j)
        w[0] |= (v[10] & np.uint32(3)) << np.uint32(30)
        w[1] |= (v[10] >> np.uint32(2)) & np.uint32(1)
        for j in range(10):
            w[1] |= v[11 + j] << np.uint32(3 * j + 1)
        w[1] |= (v[21] & np.uint32(1)) << np.uint32(31)
        w[2] |= (v[21] >> np.uint32(1)) & np.uint32(3)
        for j in range(10):
            w[2] |= v[22 + j] << np.uint32(3 * j + 2)
    return out


def gptq_unpack(words, b):
    """Inverse of gptq_pack, written as AutoGPTQ's dequantizing forward reads it (shift tables)."""
    w = words.astype(np.uint32)
    if b in (2, 4, 8):
        per, mask = 32 // b, np.uint32((1 << b) - 1)
        parts = [(w >> np.uint32(b * j)) & mask for j in range(per)]  # each (K/per, N)
        return np.stack(parts, axis=1).reshape((w.shape[0] * per,) + w.shape[1:])
    out = []
    for blk in range(w.shape[0] // 3):
        w0, w1, w2 = w[3 * blk], w[3 * blk + 1], w[3 * blk + 2]
        vals = [(w0 >> np.uint32(s)) & np.uint32(7) for s in range(0, 30, 3)]
        vals.append(((w0 >> np.uint32(30)) & np.uint32(3)) | ((w1 << np.uint32(2)) & np.uint32(4)))
        vals += [(w1 >> np.uint32(s)) & np.uint32(7) for s in range(1, 31, 3)]
        vals.append(((w1 >> np.uint32(31)) & np.uint32(1)) | ((w2 << np.uint32(1)) & np.uint32(6)))
        vals += [(w2 >> np.uint32(s)) & np.uint32(7) for s in range(2, 32, 3)]
        out += vals
    return np.stack(out, axis=0)


def to_gptq(a, v2, with_g_idx):
    b, mask = a.bits, (1 << a.bits) - 1
    if b not in (2, 3, 4, 8):
        raise SystemExit("GPTQ has no %d-bit layout" % b)
    z = a.zeros.astype(np.int64)
    if not v2:
        if (z == 0).any():
            raise SystemExit("a zero-point 0 cannot be stored by GPTQ's v1 (zero minus one) convention")
        z = z - 1
    if (z > mask).any():
        raise SystemExit("a zero-point does not fit in %d bits" % b)
    out = {".qweight": ("I32", gptq_pack(a.q.T, b).view(np.int32)),
           # qzeros (G, O*b/32): the zero-points (O, G) packed along the outputs, then transposed.
           ".qzeros": ("I32", gptq_pack(z.astype(np.uint32), b).T.copy().view(np.int32)),
           ".scales": ("F16", a.scales.T.copy())}
    if with_g_idx or a.g_idx is not None:
        out[".g_idx"] = ("I32", a.groups().astype(np.int32))
    return out


def from_gptq(t, p, b, gs, v2):
    qw = t[p + ".qweight"][1].view(np.uint32)
    q = gptq_unpack(qw, b).T  # (O, I)
    I = q.shape[1]
    z = gptq_unpack(t[p + ".qzeros"][1].view(np.uint32).T, b).T.astype(np.int64)  # (G, O)
    if not v2:
        z = z + 1
    g = t[p + ".g_idx"][1].astype(np.int64) if p + ".g_idx" in t else None
    G = I // (I if gs == -1 else gs)
    if g is not None and (g == np.arange(I) // (I // G)).all():
        g = None
    return Affine(b, q, t[p + ".scales"][1].T.astype(np.float16), z.T.astype(np.uint32), g)


def to_awq(a):
    if a.bits != 4 or a.g_idx is not None:
        raise SystemExit("AWQ GEMM is 4-bit without g_idx")
    def pack_out(x):  # x (K, O) -> (K, O/8)
        x = x.astype(np.uint32)
        out = np.zeros((x.shape[0], x.shape[1] // 8), dtype=np.uint32)
        for j in range(8):
            out |= x[:, AWQ_ORDER[j]::8] << np.uint32(4 * j)
        return out.view(np.int32)
    return {".qweight": ("I32", pack_out(a.q.T)), ".qzeros": ("I32", pack_out(a.zeros.T)),
            ".scales": ("F16", a.scales.T.copy())}


def from_awq(t, p):
    def unpack_out(words):  # AutoAWQ's unpack_awq + reverse_awq_order
        w = words.view(np.uint32)
        nib = np.stack([(w >> np.uint32(4 * j)) & np.uint32(15) for j in range(8)], axis=2)
        nib = nib.reshape(w.shape[0], -1)
        rev = np.arange(nib.shape[1]).reshape(-1, 8)[:, [0, 4, 1, 5, 2, 6, 3, 7]].reshape(-1)
        return nib[:, rev]
    return Affine(4, unpack_out(t[p + ".qweight"][1]).T, t[p + ".scales"][1].T.astype(np.float16),
                  unpack_out(t[p + ".qzeros"][1]).T, None)


def quant_settings(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    qc = cfg.get("quantization_config")
    if qc is None and os.path.exists(os.path.join(d, "quantize_config.json")):
        qc = json.load(open(os.path.join(d, "quantize_config.json")))
        qc.setdefault("quant_method", "gptq")
    return cfg, qc


def decode_dir(d):
    """{linear prefix: Affine} of a GPTQ, AWQ or lowbit affine checkpoint directory."""
    cfg, qc = quant_settings(d)
    t = read_model(d)
    out = {}
    for p in linear_prefixes(cfg):
        if p + ".qcodes" in t:
            out[p] = read_lowbit_affine(t, p, in_features(cfg, p))
        elif p + ".qweight" in t and qc["quant_method"] == "awq":
            out[p] = from_awq(t, p)
        elif p + ".qweight" in t:
            fmt = qc.get("checkpoint_format", qc.get("format", "gptq"))
            out[p] = from_gptq(t, p, qc["bits"], qc.get("group_size", 128), fmt == "gptq_v2")
    return out


def export(src, out, layout, with_g_idx=True, separate_config=False):
    cfg = json.load(open(os.path.join(src, "config.json")))
    t = read_model(src)
    os.makedirs(out, exist_ok=True)
    tensors, bits, gsz, act = {}, set(), set(), False
    for name, v in t.items():
        if not any(name.startswith(p + ".") for p in linear_prefixes(cfg)):
            tensors[name] = v
    for p in linear_prefixes(cfg):
        if p + ".weight" in t:
            tensors[p + ".weight"] = t[p + ".weight"]
            continue
        a = read_lowbit_affine(t, p, in_features(cfg, p))
        bits.add(a.bits)
        gsz.add(-1 if a.scales.shape[1] == 1 else a.group_size())  # one group: per channel
        act = act or a.g_idx is not None
        parts = to_awq(a) if layout == "awq" else to_gptq(a, layout == "gptq_v2", with_g_idx)
        for suffix, v in parts.items():
            tensors[p + suffix] = v
    if len(bits) != 1 or len(gsz) != 1:
        raise SystemExit("%s: the linears disagree on bits %s or group size %s" % (src, bits, gsz))
    b, g = bits.pop(), gsz.pop()
    if layout == "awq":
        qc = {"quant_method": "awq", "bits": b, "group_size": g, "zero_point": True, "version": "gemm"}
    else:
        qc = {"quant_method": "gptq", "bits": b, "group_size": g, "desc_act": act,
              "sym": bool((cfg.get("quantization_config") or {}).get("sym", False)),
              "checkpoint_format": layout}
    cfg.pop("quantization_config", None)
    if separate_config:
        qc.pop("quant_method")
        json.dump(qc, open(os.path.join(out, "quantize_config.json"), "w"), indent=2)
    else:
        cfg["quantization_config"] = qc
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors, {"format": "pt"})
    for f in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
              "special_tokens_map.json"):
        if os.path.exists(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), os.path.join(out, f))


def compare(a_dir, b_dir):
    A, B = decode_dir(a_dir), decode_dir(b_dir)
    if sorted(A) != sorted(B):
        print("different quantized linears: %s vs %s" % (sorted(A), sorted(B)))
        return 1
    bad = 0
    for p in sorted(A):
        da, db = A[p].dense(), B[p].dense()
        same = da.shape == db.shape and np.array_equal(da.view(np.uint32), db.view(np.uint32))
        if not same:
            bad += 1
            print("%s: differs" % p)
    print("%d linears, %d bitwise equal" % (len(A), len(A) - bad))
    return 1 if bad else 0


# ---- fixtures: tiny random checkpoints ----
def tiny_config():
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
            "vocab_size": 32, "rms_norm_eps": 1e-5, "max_position_embeddings": 256, "tie_word_embeddings": False,
            "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "torch_dtype": "float16"}


def random_affine(rng, O, I, bits, gs, act_order, zmin):
    G = I // gs
    q = rng.integers(0, 1 << bits, size=(O, I), dtype=np.uint32)
    scales = (rng.uniform(0.002, 0.05, size=(O, G)) * rng.choice([-1, 1], size=(O, G))).astype(np.float16)
    zeros = rng.integers(zmin, 1 << bits, size=(O, G), dtype=np.uint32)
    g_idx = None
    if act_order:
        g_idx = np.empty(I, dtype=np.int64)
        g_idx[rng.permutation(I)] = np.arange(I) // gs
    return Affine(bits, q, scales, zeros, g_idx)


def fixture(out_root):
    cases = [  # name, bits, group (-1: per channel), act-order, layout, zero-point minimum, separate config
        ("gptq_w4g16_actorder", 4, 16, True, "gptq", 1, False),
        ("gptq_v2_w3g16_actorder", 3, 16, True, "gptq_v2", 0, False),
        ("gptq_w2_perchannel_qcfg", 2, -1, False, "gptq", 1, True),
        ("gptq_w8g16", 8, 16, False, "gptq", 1, False),
        ("awq_w4g16", 4, 16, False, "awq", 0, False),
    ]
    rng = np.random.default_rng(26)
    for name, bits, gs, act, layout, zmin, sep in cases:
        cfg = tiny_config()
        E, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
        hd = E // cfg["num_attention_heads"]
        Q, K = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
        shapes = {"self_attn.q_proj": (Q, E), "self_attn.k_proj": (K, E), "self_attn.v_proj": (K, E),
                  "self_attn.o_proj": (E, Q), "mlp.gate_proj": (F, E), "mlp.up_proj": (F, E),
                  "mlp.down_proj": (E, F)}
        t = {"model.embed_tokens.weight": ("F16", rng.normal(0, 1, (V, E)).astype(np.float16)),
             "lm_head.weight": ("F16", rng.normal(0, 0.1, (V, E)).astype(np.float16)),
             "model.norm.weight": ("F16", np.ones(E, np.float16)),
             "model.layers.0.input_layernorm.weight": ("F16", np.ones(E, np.float16)),
             "model.layers.0.post_attention_layernorm.weight": ("F16", np.ones(E, np.float16))}
        for n, (O, I) in shapes.items():
            a = random_affine(rng, O, I, bits, I if gs == -1 else gs, act, zmin)
            for suffix, v in write_lowbit_affine(a).items():
                t["model.layers.0." + n + suffix] = v
        src, hf = os.path.join(out_root, name, "source"), os.path.join(out_root, name, "hf")
        os.makedirs(src, exist_ok=True)
        scfg = dict(cfg)
        scfg["quantization_config"] = {"quant_method": "rtn", "bits": bits, "group_size": gs, "format": "affine"}
        json.dump(scfg, open(os.path.join(src, "config.json"), "w"), indent=2)
        write_safetensors(os.path.join(src, "model.safetensors"), t, {"format": "pt"})
        export(src, hf, layout, with_g_idx=layout != "gptq_v2", separate_config=sep)
        if compare(src, hf) != 0:
            raise SystemExit("%s: the export does not decode to its source" % name)


def fuzz_seeds(out):
    """Seeds for fuzz/hf_quantized_fuzz: one linear "L" (32 x 32) per layout, its config in the metadata."""
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(2626)
    cases = [("gptq_w4g16_actorder", 4, 16, True, "gptq", 1), ("gptq_v2_w3g16", 3, 16, False, "gptq_v2", 0),
             ("gptq_w2_perchannel", 2, -1, False, "gptq", 1), ("gptq_w8g16", 8, 16, False, "gptq", 1),
             ("awq_w4g16", 4, 16, False, "awq", 0)]
    for name, bits, gs, act, layout, zmin in cases:
        a = random_affine(rng, 32, 32, bits, 32 if gs == -1 else gs, act, zmin)
        if layout == "awq":
            parts = to_awq(a)
            qc = {"quant_method": "awq", "bits": 4, "group_size": gs, "zero_point": True, "version": "gemm"}
        else:
            parts = to_gptq(a, layout == "gptq_v2", True)
            qc = {"quant_method": "gptq", "bits": bits, "group_size": gs, "desc_act": act, "sym": False,
                  "checkpoint_format": layout}
        t = {"L" + k: v for k, v in parts.items()}
        if name == "gptq_w8g16":
            t["L.bias"] = ("F16", np.zeros(32, np.float16))
        write_safetensors(os.path.join(out, name), t, {"quantization_config": json.dumps(qc)})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("src")
    e.add_argument("out")
    e.add_argument("--layout", choices=["gptq", "gptq_v2", "awq"], required=True)
    e.add_argument("--no-g-idx", action="store_true", help="omit g_idx where it is i // group_size")
    e.add_argument("--quantize-config-json", action="store_true", help="old AutoGPTQ: quantize_config.json")
    d = sub.add_parser("decode")
    d.add_argument("dir")
    d.add_argument("out")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    f = sub.add_parser("fixture")
    f.add_argument("out")
    s = sub.add_parser("fuzz-seeds")
    s.add_argument("out")
    a = ap.parse_args()
    if a.cmd == "fuzz-seeds":
        fuzz_seeds(a.out)
        return 0
    if a.cmd == "export":
        export(a.src, a.out, a.layout, not a.no_g_idx, a.quantize_config_json)
        return 0
    if a.cmd == "decode":
        write_safetensors(a.out, {p + ".weight": ("F32", w.dense()) for p, w in decode_dir(a.dir).items()})
        return 0
    if a.cmd == "compare":
        return compare(a.a, a.b)
    fixture(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
