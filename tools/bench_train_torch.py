#!/usr/bin/python3
"""The PyTorch side of the training benchmark (bench/train_bench.cpp, bench/train_vs_torch.sh): the same LoRA /
QLoRA fine-tuning step as lowbit's, in PyTorch eager on CPU, as Hugging Face + PEFT + bitsandbytes would run it.
Needs Debian's python3-torch and numpy (/usr/bin/python3 here); transformers, peft and bitsandbytes are not
installed, so their layers are written out below from their definitions:

  * the model: transformers' LlamaForCausalLM (modeling_llama.py, eager attention) in float32: RMSNorm,
    rotate-half RoPE, grouped-query attention with softmax in float32 and an additive causal mask, SiLU MLP,
    logits for every position upcast to float32 and the shifted cross-entropy (mean over the micro-batch);
  * LoRA: PEFT's LoraLayer on q,k,v,o,gate,up,down: y = base(x) + lora_B(lora_A(x)) * alpha/r, A kaiming-uniform
    (a = sqrt 5), B zero, dropout 0 (PEFT then uses nn.Identity); the base frozen (requires_grad False);
  * qlora: each block linear stored as NF4 (codes two per byte, first in the high nibble; one float32 absmax per
    64 weights; no double quantization) and dequantized to float32 in every forward and again in the backward,
    as bitsandbytes' MatMul4Bit does (bitsandbytes/autograd/_functions.py: F.linear(A, dequantize_4bit(B)) and
    grad_A = grad_output @ dequantize_4bit(B)). The dequantization is a plain torch stand-in written after
    bitsandbytes' pure-torch default kernel (bitsandbytes/backends/default/ops.py _dequantize_4bit_impl: codes
    unpacked to int32, looked up in the NF4 table, scaled per block), not bnb's CUDA or AVX-512 C++ kernels;
  * gradient checkpointing (when lowbit recomputes): torch.utils.checkpoint around each decoder layer,
    re-entrant, with the embeddings' output requiring grad (PEFT's prepare_model_for_kbit_training ->
    enable_input_require_grads), as HF's gradient_checkpointing_enable does;
  * the step: micro-batches with loss / accumulation (HF Trainer), clip_grad_norm_(0.3) (qlora's), torch.optim.
    AdamW(lr 2e-4, weight decay 0), zero_grad.

Data: --tokens FILE, raw little-endian int32 (batch x seq_len), as `train_bench --dump-tokens` writes them; every
step trains on the same batch (a step's cost does not depend on the ids). Prints tokens/s (median of the timed
steps after one warm-up step), peak RSS (getrusage ru_maxrss: the whole process, loading included) and the peak of
the training steps alone (VmHWM after resetting it through /proc/self/clear_refs), and a RESULT line for
bench/train_vs_torch.sh.

torch's matmuls go through the same libopenblas as lowbit's (Debian's openblas-openmp is the libblas.so.3
python3-torch links); on a CPU newer than that OpenBLAS, which falls back to its pre-AVX2 kernels there, this script
sets OPENBLAS_CORETYPE and re-executes itself exactly as lowbit does (src/core/blas.cpp; README.md), so both sides
run the same sgemm kernels. Set OMP_WAIT_POLICY the same for both sides: on a loaded machine active waiting costs
torch as much as lowbit (10x measured on 2 busy cores).

  /usr/bin/python3 tools/bench_train_torch.py --model MODEL --tokens FILE \
      --method qlora --batch 16 --micro-batch 4 --seq-len 512 --rank 64 --threads 2
"""
import argparse
import ctypes
import json
import math
import os
import resource
import struct
import sys
import time


# OpenBLAS's x86-64 kernel families without AVX2 (src/core/blas.cpp's list).
PRE_AVX2 = {"katmai", "coppermine", "northwood", "prescott", "banias", "atom", "core2", "penryn", "dunnington",
            "nehalem", "sandybridge", "opteron", "opteron_sse3", "barcelona", "bobcat", "bulldozer", "piledriver",
            "steamroller", "excavator"}


def blas_startup_check():
    """lowbit_blas_startup_check in Python: before torch loads OpenBLAS, ask the library which kernels it chose;
    if they predate AVX2 on a CPU with AVX-512 (Skylake-X's set) or AVX2+FMA, re-execute with OPENBLAS_CORETYPE."""
    if os.environ.get("OPENBLAS_CORETYPE"):
        return
    try:
        lib = ctypes.CDLL("libblas.so.3")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        core = lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return
    if core.lower() not in PRE_AVX2:
        return
    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        new = "SkylakeX"
    elif {"avx2", "fma"} <= flags:
        new = "Haswell"
    else:
        return
    os.environ["OPENBLAS_CORETYPE"] = new
    os.environ["LOWBIT_BLAS_CORE_REPLACED"] = core
    os.execv(sys.executable, [sys.executable] + sys.argv)


blas_startup_check()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.utils.checkpoint  # noqa: E402

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
# bitsandbytes functional.get_4bit_type("nf4").
NF4 = torch.tensor([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                    0.7229568362236023, 1.0])
BLOCK = 64


def read_tensors(model_dir):
    """Yields (name, float32 tensor) one at a time from the safetensors file(s), reading each tensor's bytes
    alone, so loading holds at most one tensor beyond the model (ref_score.load_safetensors reads whole files,
    which would put a 1B checkpoint's 2.5 GB into the peak RSS)."""
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else \
        ["model.safetensors"]
    for fn in files:
        with open(os.path.join(model_dir, fn), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            for name, t in header.items():
                if name == "__metadata__":
                    continue
                a, b = t["data_offsets"]
                f.seek(8 + n + a)
                buf = f.read(b - a)
                if t["dtype"] == "BF16":
                    arr = (np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
                elif t["dtype"] == "F32":
                    arr = np.frombuffer(buf, dtype=np.float32).copy()
                elif t["dtype"] == "F16":
                    arr = np.frombuffer(buf, dtype=np.float16).astype(np.float32)
                else:
                    raise ValueError(f"{fn}: {name}: dtype {t['dtype']}")
                del buf
                yield name, torch.from_numpy(arr.reshape(t["shape"]))


def nf4_quantize(w):
    """(packed codes uint8 (numel/2), absmax float32 (numel/64)): each weight scaled by its block's absmax and
    given the code of the nearest NF4 value (the count of midpoints below it, bitsandbytes' decision tree)."""
    blocks = w.reshape(-1, BLOCK)
    absmax = blocks.abs().amax(1)
    mids = (NF4[1:] + NF4[:-1]) / 2
    codes = torch.searchsorted(mids, (blocks / absmax[:, None]).reshape(-1).contiguous()).to(torch.uint8)
    return (codes[0::2] << 4) | codes[1::2], absmax


def nf4_dequantize(packed, absmax, shape):
    """float32 weights of `shape`: after bitsandbytes' default (pure torch) _dequantize_4bit_impl."""
    codes = torch.empty(packed.numel() * 2, dtype=torch.int32)
    codes[0::2] = packed >> 4
    codes[1::2] = packed & 0xF
    return (NF4.index_select(0, codes).view(-1, BLOCK) * absmax.view(-1, 1)).view(shape)


class MatMulNF4(torch.autograd.Function):
    """bitsandbytes MatMul4Bit on a frozen NF4 weight: the weight dequantized in the forward and again in the
    backward (only the 4-bit form is kept between them); no weight gradient."""

    @staticmethod
    def forward(ctx, x, packed, absmax, shape):
        ctx.save_for_backward(packed, absmax)
        ctx.shape = shape
        return F.linear(x, nf4_dequantize(packed, absmax, shape))

    @staticmethod
    def backward(ctx, g):
        packed, absmax = ctx.saved_tensors
        return g @ nf4_dequantize(packed, absmax, ctx.shape), None, None, None


class LoraLinear(torch.nn.Module):
    """PEFT's LoRA Linear around a frozen base (dense float32 or NF4)."""

    def __init__(self, w, r, alpha, nf4):
        super().__init__()
        out_f, in_f = w.shape
        self.shape = (out_f, in_f)
        if nf4:
            packed, absmax = nf4_quantize(w)
            self.register_buffer("packed", packed)
            self.register_buffer("absmax", absmax)
            self.weight = None
        else:
            self.register_buffer("weight", w)  # a buffer: frozen, never in the optimiser
        self.lora_A = torch.nn.Linear(in_f, r, bias=False)
        self.lora_B = torch.nn.Linear(r, out_f, bias=False)
        torch.nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / r

    def forward(self, x):
        if self.weight is None:
            y = MatMulNF4.apply(x, self.packed, self.absmax, self.shape)
        else:
            y = F.linear(x, self.weight)
        return y + self.lora_B(self.lora_A(x)) * self.scaling


class Llama(torch.nn.Module):
    def __init__(self, model_dir, method, r, alpha):
        super().__init__()
        c = json.load(open(os.path.join(model_dir, "config.json")))
        self.cfg = c
        self.nh, self.nkv = c["num_attention_heads"], c["num_key_value_heads"]
        self.hd = c.get("head_dim") or c["hidden_size"] // self.nh
        self.eps = c["rms_norm_eps"]
        self.n_layer = c["num_hidden_layers"]
        self.inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, self.hd, 2, dtype=torch.int64).float() / self.hd))
        self.lin = torch.nn.ModuleDict()
        self.norms = {}
        for name, t in read_tensors(model_dir):
            parts = name.split(".")
            if name.startswith("model.layers.") and ".".join(parts[3:5]) in LINEARS:
                # Quantized as loaded (bnb's load_in_4bit): a linear's float32 weights exist one at a time.
                self.lin[name[len("model."):-len(".weight")].replace(".", "_")] = \
                    LoraLinear(t, r, alpha, method == "qlora")
            else:
                self.norms[name] = t
            del t
        self.embed = self.norms.pop("model.embed_tokens.weight")
        self.head = self.norms.pop("lm_head.weight", self.embed)  # tied: the same tensor, as HF ties them

    def linear(self, l, name, x):
        return self.lin[f"layers_{l}_{name.replace('.', '_')}"](x)

    def norm(self, x, w):  # LlamaRMSNorm
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def layer(self, l, x, cos, sin, mask):
        B, T, _ = x.shape
        p = f"model.layers.{l}."
        h = self.norm(x, self.norms[p + "input_layernorm.weight"])
        q = self.linear(l, "self_attn.q_proj", h).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.linear(l, "self_attn.k_proj", h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.linear(l, "self_attn.v_proj", h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        half = self.hd // 2
        q = q * cos + torch.cat([-q[..., half:], q[..., :half]], dim=-1) * sin
        k = k * cos + torch.cat([-k[..., half:], k[..., :half]], dim=-1) * sin
        rep = self.nh // self.nkv  # repeat_kv
        k = k[:, :, None].expand(B, self.nkv, rep, T, self.hd).reshape(B, self.nh, T, self.hd)
        v = v[:, :, None].expand(B, self.nkv, rep, T, self.hd).reshape(B, self.nh, T, self.hd)
        att = q @ k.transpose(2, 3) / math.sqrt(self.hd) + mask
        att = torch.softmax(att, dim=-1, dtype=torch.float32) @ v
        x = x + self.linear(l, "self_attn.o_proj", att.transpose(1, 2).reshape(B, T, -1))
        h = self.norm(x, self.norms[p + "post_attention_layernorm.weight"])
        g = self.linear(l, "mlp.gate_proj", h)
        u = self.linear(l, "mlp.up_proj", h)
        return x + self.linear(l, "mlp.down_proj", F.silu(g) * u)

    def loss(self, ids, recompute):
        B, T = ids.shape
        x = F.embedding(ids, self.embed)
        freqs = torch.outer(torch.arange(T).float(), self.inv_freq)
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((T, T), float("-inf")).triu(1)
        if recompute:
            x.requires_grad_(True)
        for l in range(self.n_layer):
            if recompute:
                x = torch.utils.checkpoint.checkpoint(self.layer, l, x, cos, sin, mask, use_reentrant=True)
            else:
                x = self.layer(l, x, cos, sin, mask)
        logits = F.linear(self.norm(x, self.norms["model.norm.weight"]), self.head).float()
        shift = logits[:, :-1, :].contiguous()
        return F.cross_entropy(shift.view(-1, shift.shape[-1]), ids[:, 1:].reshape(-1))


def openblas_core():
    """The kernels OpenBLAS chose in this process (the library torch loaded), or '?' when it is not found."""
    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if "blas" in os.path.basename(path) and path.endswith((".so", ".so.0", ".so.3")):
            try:
                f = ctypes.CDLL(path).openblas_get_corename
                f.restype = ctypes.c_char_p
                core = f().decode()
                old = os.environ.get("LOWBIT_BLAS_CORE_REPLACED")
                return f"{core} (replacing OpenBLAS's {old})" if old else core
            except (OSError, AttributeError):
                continue
    return "?"


def vm_field(name):
    for line in open("/proc/self/status"):
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def gib(n):
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--method", default="qlora", choices=["qlora", "lora"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-recompute", action="store_true")
    a = ap.parse_args()
    if a.batch % a.micro_batch:
        sys.exit("--batch must be a multiple of --micro-batch")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    recompute = not a.no_recompute

    t0 = time.perf_counter()
    ids = np.fromfile(a.tokens, dtype="<i4")
    if ids.size != a.batch * a.seq_len:
        sys.exit(f"{a.tokens}: {ids.size} tokens, expected {a.batch} x {a.seq_len}")
    ids = torch.from_numpy(ids.astype(np.int64)).view(a.batch, a.seq_len)
    model = Llama(a.model, a.method, a.rank, a.alpha)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    setup_s = time.perf_counter() - t0
    rss_setup = vm_field("VmRSS")
    peak_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    phase = reset_peak()

    accum = a.batch // a.micro_batch
    times, loss_v = [], 0.0
    for s in range(a.steps + 1):  # step 0: warm-up, not timed
        t = time.perf_counter()
        loss_v = 0.0
        for m in range(accum):
            loss = model.loss(ids[m * a.micro_batch:(m + 1) * a.micro_batch], recompute) / accum
            loss.backward()
            loss_v += float(loss)
        torch.nn.utils.clip_grad_norm_(params, 0.3)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t
        if s > 0:
            times.append(dt)
        print(f"step {s}{' (warm-up)' if s == 0 else ''}: {dt:.2f} s, loss {loss_v:.4f}", file=sys.stderr, flush=True)
    # After the reset, ru_maxrss is the peak since the reset: the process's peak is the larger of the two.
    peak = max(peak_setup, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    peak_train = vm_field("VmHWM") if phase else 0
    sec = float(np.median(times))
    tps = a.batch * a.seq_len / sec
    n_adapter = sum(p.numel() for p in params)
    print(f"model {a.model}  method {a.method}  torch {torch.__version__} eager float32  threads "
          f"{torch.get_num_threads()}  OpenBLAS {openblas_core()}")
    print(f"batch {a.batch} (micro-batch {a.micro_batch} x {a.seq_len} tokens), rank {a.rank}, alpha {a.alpha}, "
          f"recompute {'on (torch.utils.checkpoint per layer)' if recompute else 'off'}; {n_adapter} adapter parameters")
    if a.method == "qlora":
        print("base: NF4 (per-64 absmax, no double quantization), dequantized in torch in each forward and backward "
              "(a CPU stand-in for bitsandbytes' kernel)")
    print(f"setup {setup_s:.1f} s; RSS after setup {gib(rss_setup)}")
    print(f"step {sec:.2f} s (median of {len(times)}: {' '.join(f'{x:.2f}' for x in times)}), last loss {loss_v:.4f}")
    print(f"train {tps:.1f} tokens/s")
    print(f"peak RSS {gib(peak)} (after setup {gib(peak_setup)}"
          + (f"; training steps alone {gib(peak_train)})" if phase else ")"))
    print(f"RESULT impl=torch tok_s={tps:.2f} step_s={sec:.3f} peak_rss={peak} train_peak_rss={peak_train} "
          f"loss={loss_v:.4f}")


if __name__ == "__main__":
    main()
