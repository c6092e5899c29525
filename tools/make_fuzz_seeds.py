#!/usr/bin/env python3
"""Writes the hand-made seed corpora for fuzz/safetensors_fuzz, fuzz/gguf_fuzz and (the nf4, dualbin and quip
seeds of) fuzz/packed_linear_fuzz.

Every seed is a tiny valid file built here from scratch (no model files are copied). Run from the repository
root: python3 tools/make_fuzz_seeds.py
"""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def write(sub, name, data):
    d = os.path.join(ROOT, "fuzz", "corpus", sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- safetensors: u64 header length, JSON header, data ----
def safetensors(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, raw bytes), stored contiguously in order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


write("safetensors", "empty_header", safetensors([]))
write("safetensors", "metadata_only", safetensors([], {"format": "pt", "quant": "rtn"}))
write("safetensors", "two_tensors", safetensors(
    [("a", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6)), ("b", "BF16", [4], struct.pack("<4H", 0x3F80, 0x4000, 0, 1))],
    {"format": "pt"}))
write("safetensors", "all_dtypes", safetensors([
    ("f64", "F64", [1], struct.pack("<d", 0.5)), ("i64", "I64", [1], struct.pack("<q", -1)),
    ("f32", "F32", [1], f32(1)), ("i32", "I32", [1], struct.pack("<i", 7)),
    ("f16", "F16", [2], struct.pack("<2H", 0x3C00, 0)), ("i16", "I16", [1], struct.pack("<h", -2)),
    ("u8", "U8", [3], b"\x01\x02\x03"), ("i8", "I8", [1], b"\xff"), ("bool", "BOOL", [1], b"\x01")]))
write("safetensors", "zero_sized", safetensors([("e", "F32", [0, 4], b""), ("s", "F32", [], f32(3))], pad=False))


# ---- GGUF: magic, version, counts, key/values, tensor infos, aligned data ----
class Gguf:
    def __init__(self, version):
        self.v, self.kv, self.n_kv, self.tensors = version, b"", 0, []

    def count(self, n):
        return struct.pack("<I" if self.v == 1 else "<Q", n)

    def s(self, text):
        b = text.encode() if isinstance(text, str) else text
        return self.count(len(b)) + b

    def add(self, key, type_id, payload):
        self.kv += self.s(key) + struct.pack("<I", type_id) + payload
        self.n_kv += 1

    def u32(self, key, v):
        self.add(key, 4, struct.pack("<I", v))

    def f32(self, key, v):
        self.add(key, 6, struct.pack("<f", v))

    def string(self, key, v):
        self.add(key, 8, self.s(v))

    def array(self, elem_type, items):
        return struct.pack("<I", elem_type) + self.count(len(items)) + b"".join(items)

    def tensor(self, name, dims, ggml_type, raw):
        self.tensors.append((name, dims, ggml_type, raw))

    def build(self, alignment=32):
        out = b"GGUF" + struct.pack("<I", self.v) + self.count(len(self.tensors)) + self.count(self.n_kv) + self.kv
        off, offs = 0, []
        for name, dims, t, raw in self.tensors:
            out += self.s(name) + struct.pack("<I", len(dims)) + b"".join(self.count(d) for d in dims)
            out += struct.pack("<IQ", t, off)
            offs.append(off)
            off = (off + len(raw) + alignment - 1) // alignment * alignment
        out += b"\0" * ((alignment - len(out) % alignment) % alignment)
        base = len(out)
        for (name, dims, t, raw), o in zip(self.tensors, offs):
            out += b"\0" * (base + o - len(out)) + raw
        return out


def tiny_llama(version, with_output=True):
    """One block: n_embd 4, 2 heads, 1 KV head, n_ff 4, a 7-piece SentencePiece-style vocabulary."""
    g = Gguf(version)
    g.string("general.architecture", "llama")
    for k, v in [("embedding_length", 4), ("block_count", 1), ("feed_forward_length", 4),
                 ("attention.head_count", 2), ("attention.head_count_kv", 1), ("context_length", 16),
                 ("rope.dimension_count", 2)]:
        g.u32("llama." + k, v)
    g.f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    g.f32("llama.rope.freq_base", 10000.0)
    g.string("tokenizer.ggml.model", "llama")
    toks = ["<unk>", "<s>", "</s>", "<0x41>", "\u2581", "a", "\u2581a"]
    g.add("tokenizer.ggml.tokens", 9, g.array(8, [g.s(t) for t in toks]))
    g.add("tokenizer.ggml.scores", 9, g.array(6, [struct.pack("<f", -float(i)) for i in range(len(toks))]))
    g.add("tokenizer.ggml.token_type", 9, g.array(5, [struct.pack("<i", t) for t in [2, 3, 3, 6, 1, 1, 1]]))
    g.u32("tokenizer.ggml.bos_token_id", 1)
    g.u32("tokenizer.ggml.eos_token_id", 2)
    mat = lambda r, c: f32(*[0.25 * i for i in range(r * c)])
    g.tensor("token_embd.weight", [4, 7], 0, mat(7, 4))
    for name, dims in [("attn_norm", [4]), ("attn_q", [4, 4]), ("attn_k", [4, 2]), ("attn_v", [4, 2]),
                       ("attn_output", [4, 4]), ("ffn_norm", [4]), ("ffn_gate", [4, 4]), ("ffn_up", [4, 4]),
                       ("ffn_down", [4, 4])]:
        n = 1
        for d in dims:
            n *= d
        g.tensor("blk.0.%s.weight" % name, dims, 0, f32(*[1.0] * n))
    g.tensor("output_norm.weight", [4], 0, f32(1, 1, 1, 1))
    if with_output:
        g.tensor("output.weight", [4, 7], 1, struct.pack("<28H", *([0x3C00] * 28)))  # F16
    return g.build()


write("gguf", "tiny_llama_v1", tiny_llama(1))
write("gguf", "tiny_llama_v2", tiny_llama(2))
write("gguf", "tiny_llama_v3_tied", tiny_llama(3, with_output=False))

g = Gguf(3)
for i, (fmt, v) in enumerate([("<B", 200), ("<b", -1), ("<H", 60000), ("<h", -2), ("<I", 7), ("<i", -7),
                              ("<f", 1.5), ("<B", 1)]):
    g.add("v.%d" % i, i, struct.pack(fmt, v))
g.string("v.8", "text")
g.add("v.10", 10, struct.pack("<Q", 1 << 40))
g.add("v.11", 11, struct.pack("<q", -(1 << 40)))
g.add("v.12", 12, struct.pack("<d", 0.1))
g.add("nested", 9, g.array(9, [g.array(0, [b"\x01", b"\x02"]), g.array(8, [g.s("x")])]))
g.u32("general.alignment", 64)
g.tensor("bf16", [2], 30, struct.pack("<2H", 0x3F80, 0x4000))
g.tensor("q4_0", [32], 2, b"\0" * 18)
write("gguf", "all_value_types", g.build(64))


# ---- packed_linear: two bytes choosing in_features, then a safetensors file holding one packed linear "L" ----
def packed_linear(cols, tensors):
    return struct.pack("<H", cols - 1) + safetensors(tensors)


def nf4_linear(rows, cols, double_quant, icq, odd=False):
    """An NF4 linear (formats/nf4.h): codes (rows, cols/2), then f32 absmax or double-quantized absmax, then
    ICQ's tau. odd: a one-byte tensor first, so that every F32 tensor after it sits at an odd offset."""
    nb = rows * cols // 64
    ns = (nb + 255) // 256
    t = [("L.pad", "U8", [1], b"\x00")] if odd else []
    t.append(("L.nf4_codes", "U8", [rows, cols // 2], bytes((i * 37 + 11) % 256 for i in range(rows * cols // 2))))
    if double_quant:
        t.append(("L.nf4_absmax_q", "U8", [nb], bytes((i * 53) % 256 for i in range(nb))))
        t.append(("L.nf4_absmax2", "F32", [ns], f32(*[0.01 * (i + 1) for i in range(ns)])))
        t.append(("L.nf4_absmax_offset", "F32", [], f32(0.02)))
    else:
        t.append(("L.nf4_absmax", "F32", [nb], f32(*[0.05 + 0.001 * i for i in range(nb)])))
    if icq:
        t.append(("L.nf4_tau_q", "U8", [nb], bytes((i * 71 + 5) % 256 for i in range(nb))))
        t.append(("L.nf4_tau2", "F32", [ns], f32(*[0.003] * ns)))
    return packed_linear(cols, t)


write("packed_linear", "nf4_f32_absmax", nf4_linear(2, 128, False, False))
write("packed_linear", "nf4_double_quant", nf4_linear(4, 64, True, False))
write("packed_linear", "nf4_dq_icq_partial_group", nf4_linear(300, 64, True, True))  # 300 blocks: 256 + 44
write("packed_linear", "nf4_icq_misaligned", nf4_linear(3, 128, False, True, odd=True))


def dualbin_linear(rows, cols, group, odd=False):
    """A dual-binarization linear (formats/dualbin.h): two bit planes (rows, cols/8) and fp16 scales
    (rows, 2 * groups), alpha1 then alpha2 per group. odd: a one-byte tensor first, so that the F16 scales sit
    at an odd offset."""
    ng = cols // group
    t = [("L.pad", "U8", [1], b"\x00")] if odd else []
    t.append(("L.bplane1", "U8", [rows, cols // 8], bytes((i * 29 + 3) % 256 for i in range(rows * cols // 8))))
    t.append(("L.bplane2", "U8", [rows, cols // 8], bytes((i * 83 + 7) % 256 for i in range(rows * cols // 8))))
    alphas = [(0.02 + 0.001 * i) * (1 if i % 4 < 2 else -1) for i in range(rows * ng * 2)]
    t.append(("L.bscales", "F16", [rows, 2 * ng], struct.pack("<%de" % len(alphas), *alphas)))
    return packed_linear(cols, t)


write("packed_linear", "dualbin_g128", dualbin_linear(3, 256, 128))
write("packed_linear", "dualbin_g8", dualbin_linear(5, 64, 8))
write("packed_linear", "dualbin_g64_misaligned", dualbin_linear(2, 128, 64, odd=True))


def quip_linear(rows, cols, bits, kind, odd=False):
    """A QuIP linear (formats/quip.h): b-bit codes (rows, ceil(cols * bits / 8)), the scale (1), the column scales
    d (cols) and the meta (rotation kind, U's seed, V's seed). odd: a one-byte tensor first, so that the F32 and
    I64 tensors sit at odd offsets."""
    rb = (cols * bits + 7) // 8
    t = [("L.pad", "U8", [1], b"\x00")] if odd else []
    t.append(("L.quip_codes", "U8", [rows, rb], bytes((i * 59 + 13) % 256 for i in range(rows * rb))))
    t.append(("L.quip_scale", "F32", [1], f32(0.75)))
    t.append(("L.quip_d", "F32", [cols], f32(*[0.5 + 0.01 * i for i in range(cols)])))
    t.append(("L.quip_meta", "I64", [3], struct.pack("<3q", kind, 1234, -5678)))
    return packed_linear(cols, t)


write("packed_linear", "quip_kronecker_2bit", quip_linear(12, 40, 2, 0))
write("packed_linear", "quip_hadamard_4bit", quip_linear(24, 12, 4, 1))
write("packed_linear", "quip_kronecker_3bit_misaligned", quip_linear(6, 20, 3, 0, odd=True))


def pbllm_linear(rows, cols, group, every, odd=False):
    """A partially binarized linear (formats/pbllm.h): sign plane (rows, cols/8) with 0 at salient positions,
    fp16 (mu, alpha) per (row, group), f32 (S, Z) per row, the salient weights' codes, and the mask: a bitmap
    when salient weights are dense (every 3rd), else positions within the group + per-group counts. Every
    `every`-th weight of the matrix is salient. odd: a one-byte tensor first (odd offsets for F16/F32/I16)."""
    ng = cols // group
    sal = [i % every == 0 for i in range(rows * cols)]
    signs = bytearray(rows * cols // 8)
    for i in range(rows * cols):
        if not sal[i] and (i * 7 + 3) % 5 < 2:
            signs[i // 8] |= 1 << (i % 8)
    nnz = sum(sal)
    t = [("L.pad", "U8", [1], b"\x00")] if odd else []
    t.append(("L.pb_signs", "U8", [rows, cols // 8], bytes(signs)))
    par = [(0.01 * (i % 7) - 0.03, 0.02 + 0.001 * i) for i in range(rows * ng)]
    t.append(("L.pb_binpar", "F16", [rows, 2 * ng], struct.pack("<%de" % (2 * len(par)), *[v for p in par for v in p])))
    t.append(("L.pb_rowpar", "F32", [rows, 2], f32(*[v for r in range(rows) for v in (0.004 + 0.001 * r, 128.0)])))
    t.append(("L.pb_values", "U8", [nnz], bytes((i * 97 + 1) % 256 for i in range(nnz))))
    if 8 * nnz + 16 * rows * ng >= rows * cols:
        bitmap = bytearray(rows * cols // 8)
        for i in range(rows * cols):
            if sal[i]:
                bitmap[i // 8] |= 1 << (i % 8)
        t.append(("L.pb_bitmap", "U8", [rows, cols // 8], bytes(bitmap)))
    else:
        pos, counts = [], []
        for r in range(rows):
            for g in range(ng):
                n = 0
                for j in range(group):
                    if sal[r * cols + g * group + j]:
                        pos.append(j)
                        n += 1
                counts.append(n)
        t.append(("L.pb_pos", "U8", [nnz], bytes(pos)))
        t.append(("L.pb_counts", "I16", [rows, ng], struct.pack("<%dH" % len(counts), *counts)))
    return packed_linear(cols, t)


write("packed_linear", "pbllm_g128_positions", pbllm_linear(3, 256, 128, 10))
write("packed_linear", "pbllm_g32_bitmap", pbllm_linear(4, 64, 32, 3))
write("packed_linear", "pbllm_g64_misaligned", pbllm_linear(2, 128, 64, 11, odd=True))


def billm_linear(rows, cols, group, every, odd=False):
    """A BiLLM linear (formats/billm.h): planes A (bl_signs, the marker) and B (bl_plane2), both (rows, cols/8),
    the salient columns (cols/8; every `every`-th column, so some blocks of 32 columns have none), and 7 fp16
    parameters (mu1, alpha1, mu2, alpha2, mu_s, alpha_s1, alpha_s2) per (row, block), block-major within a row.
    odd: a one-byte tensor first (the F16 parameters at an odd offset)."""
    ng = cols // group
    sal = bytearray(cols // 8)
    for c in range(0, cols, every):
        sal[c // 8] |= 1 << (c % 8)
    t = [("L.pad", "U8", [1], b"\x00")] if odd else []
    t.append(("L.bl_signs", "U8", [rows, cols // 8], bytes((i * 41 + 9) % 256 for i in range(rows * cols // 8))))
    t.append(("L.bl_plane2", "U8", [rows, cols // 8], bytes((i * 67 + 5) % 256 for i in range(rows * cols // 8))))
    t.append(("L.bl_salient", "U8", [cols // 8], bytes(sal)))
    par = [0.01 * (i % 5) - 0.02 if i % 7 in (0, 2, 4) else 0.015 + 0.001 * (i % 13) for i in range(rows * ng * 7)]
    t.append(("L.bl_par", "F16", [rows, 7 * ng], struct.pack("<%de" % len(par), *par)))
    return packed_linear(cols, t)


write("packed_linear", "billm_g128", billm_linear(3, 256, 128, 37))
write("packed_linear", "billm_g32", billm_linear(4, 96, 32, 5))
write("packed_linear", "billm_g64_misaligned", billm_linear(2, 128, 64, 50, odd=True))


def slim_linear(rows, cols, group, bits, odd=False):
    """A SliM linear (formats/slim.h): codes (rows, row_bytes; the marker), each row group after group at the
    group's width, LSB-first (every bit pattern is a valid code), the widths (one per group), fp16 scales and
    uint8 zero-points (rows, groups; ≤ 2^bits − 1, 0 in 1-bit groups), and the fp16 means of the 1-bit groups
    (rows, number of 1-bit groups; absent when there are none). odd: a one-byte tensor first (the F16 tensors
    at odd offsets)."""
    ng = cols // group
    assert len(bits) == ng and group % 8 == 0
    rb = sum(group * b // 8 for b in bits)
    n1 = bits.count(1)
    t = [("L.pad", "U8", [1], b"\x00")] if odd else []
    t.append(("L.sl_codes", "U8", [rows, rb], bytes((i * 53 + 17) % 256 for i in range(rows * rb))))
    t.append(("L.sl_bits", "U8", [ng], bytes(bits)))
    scales = [(0.01 + 0.002 * (i % 9)) * (1 if i % 3 else -1) for i in range(rows * ng)]
    t.append(("L.sl_scales", "F16", [rows, ng], struct.pack("<%de" % len(scales), *scales)))
    zeros = [0 if bits[i % ng] == 1 else (i * 13 + 1) % (1 << bits[i % ng]) for i in range(rows * ng)]
    t.append(("L.sl_zeros", "U8", [rows, ng], bytes(zeros)))
    if n1:
        means = [0.005 * ((i % 7) - 3) for i in range(rows * n1)]
        t.append(("L.sl_means", "F16", [rows, n1], struct.pack("<%de" % len(means), *means)))
    return packed_linear(cols, t)


write("packed_linear", "slim_g128", slim_linear(3, 512, 128, [1, 2, 3, 2]))
write("packed_linear", "slim_g32", slim_linear(4, 128, 32, [2, 3, 4, 3]))
write("packed_linear", "slim_g64_misaligned", slim_linear(2, 256, 64, [3, 1, 7, 2], odd=True))
