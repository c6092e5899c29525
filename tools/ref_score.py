#!/usr/bin/env python3
"""Independent scorer for lowbit's task harness (issue 4): a pure-Python SentencePiece BPE encoder and a
PyTorch LLaMA forward written from the HF LlamaForCausalLM definition, applied to the requests of
tools/ref_tasks.py with the issue's token split:
    whole = [BOS] + encode(context + continuation), ctx = [BOS] + encode(context),
    logprob = sum of log_softmax over whole[len(ctx):], last max_length tokens kept.
Needs torch (CPU is fine) and numpy (/usr/bin/python3 here); no transformers/sentencepiece/safetensors.

  /usr/bin/python3 tools/ref_score.py --model ../shared/models/testbed-25m --n 20 [--compare lowbit_log.jsonl]

--selftest checks the tokenizer and the forward against refs/testbed-25m.json (golden input_ids and
next-token log-probabilities computed with transformers).
"""
import argparse
import heapq
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_tasks  # noqa: E402


# Hendrycks et al. (2021) categories.py: subject -> subcategory -> one of four groups.
MMLU_SUBCATEGORY = {
    "abstract_algebra": "math", "anatomy": "health", "astronomy": "physics", "business_ethics": "business",
    "clinical_knowledge": "health", "college_biology": "biology", "college_chemistry": "chemistry",
    "college_computer_science": "computer science", "college_mathematics": "math", "college_medicine": "health",
    "college_physics": "physics", "computer_security": "computer science", "conceptual_physics": "physics",
    "econometrics": "economics", "electrical_engineering": "engineering", "elementary_mathematics": "math",
    "formal_logic": "philosophy", "global_facts": "other", "high_school_biology": "biology",
    "high_school_chemistry": "chemistry", "high_school_computer_science": "computer science",
    "high_school_european_history": "history", "high_school_geography": "geography",
    "high_school_government_and_politics": "politics", "high_school_macroeconomics": "economics",
    "high_school_mathematics": "math", "high_school_microeconomics": "economics", "high_school_physics": "physics",
    "high_school_psychology": "psychology", "high_school_statistics": "math", "high_school_us_history": "history",
    "high_school_world_history": "history", "human_aging": "health", "human_sexuality": "culture",
    "international_law": "law", "jurisprudence": "law", "logical_fallacies": "philosophy",
    "machine_learning": "computer science", "management": "business", "marketing": "business",
    "medical_genetics": "health", "miscellaneous": "other", "moral_disputes": "philosophy",
    "moral_scenarios": "philosophy", "nutrition": "health", "philosophy": "philosophy", "prehistory": "history",
    "professional_accounting": "other", "professional_law": "law", "professional_medicine": "health",
    "professional_psychology": "psychology", "public_relations": "politics", "security_studies": "politics",
    "sociology": "culture", "us_foreign_policy": "politics", "virology": "health", "world_religions": "philosophy",
}
MMLU_GROUPS = {
    "STEM": ["physics", "chemistry", "biology", "computer science", "math", "engineering"],
    "humanities": ["history", "philosophy", "law"],
    "social sciences": ["politics", "culture", "economics", "geography", "psychology"],
    "other": ["other", "business", "health"],
}


# ---- SentencePiece BPE (tokenizer.model protobuf: ModelProto.pieces = field 1) ----
def _varint(b, i):
    x = s = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return x, i


def _fields(b):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type")
        yield f, v


class SpmBpe:
    NORMAL, UNKNOWN, CONTROL, USER, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

    def __init__(self, path):
        self.pieces, self.scores, self.types = [], [], []
        for f, v in _fields(open(path, "rb").read()):
            if f != 1:
                continue
            piece, score, typ = "", 0.0, self.NORMAL
            for g, w in _fields(v):
                if g == 1:
                    piece = w.decode("utf-8")
                elif g == 2:
                    score = struct.unpack("<f", w)[0]
                elif g == 3:
                    typ = w
            self.pieces.append(piece)
            self.scores.append(score)
            self.types.append(typ)
        self.merge_ids = {p: i for i, (p, t) in enumerate(zip(self.pieces, self.types)) if t in (self.NORMAL, self.USER)}
        self.byte_ids = {int(p[3:5], 16): i for i, (p, t) in enumerate(zip(self.pieces, self.types)) if t == self.BYTE}
        self.bos = 1

    def encode(self, text):
        # LLaMA normalizer: identity, add_dummy_prefix, spaces -> U+2581; empty text encodes to nothing.
        if not text:
            return []
        s = "\u2581" + text.replace(" ", "\u2581")
        sym = list(s)
        prev = list(range(-1, len(sym) - 1))
        nxt = list(range(1, len(sym) + 1))
        nxt[-1] = -1
        heap = []

        def push(i):
            j = nxt[i]
            if j == -1:
                return
            m = sym[i] + sym[j]
            if m in self.merge_ids:
                heapq.heappush(heap, (-self.scores[self.merge_ids[m]], i, sym[i], sym[j]))

        for i in range(len(sym) - 1):
            push(i)
        while heap:
            _, i, a, b = heapq.heappop(heap)
            j = nxt[i] if sym[i] is not None else -1
            if j == -1 or sym[i] != a or sym[j] != b:
                continue  # stale
            sym[i] = a + b
            sym[j] = None
            nxt[i] = nxt[j]
            if nxt[j] != -1:
                prev[nxt[j]] = i
            if prev[i] != -1:
                push(prev[i])
            push(i)
        ids = []
        i = 0
        while i != -1:
            p = sym[i]
            if p in self.merge_ids:
                ids.append(self.merge_ids[p])
            else:
                ids.extend(self.byte_ids[c] for c in p.encode("utf-8"))
            i = nxt[i]
        return ids


# ---- LLaMA forward (HF LlamaForCausalLM in float32 over the stored weights) ----
def load_safetensors(model_dir):
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    out = {}
    for fn in files:
        raw = open(os.path.join(model_dir, fn), "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        for name, t in header.items():
            if name == "__metadata__":
                continue
            a, b = t["data_offsets"]
            buf = raw[8 + n + a:8 + n + b]
            if t["dtype"] == "BF16":
                u = np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16
                arr = u.view(np.float32)
            elif t["dtype"] == "F32":
                arr = np.frombuffer(buf, dtype=np.float32)
            elif t["dtype"] == "F16":
                arr = np.frombuffer(buf, dtype=np.float16).astype(np.float32)
            else:
                raise ValueError(t["dtype"])
            out[name] = torch.from_numpy(arr.copy().reshape(t["shape"]))
    return out


class Llama:
    def __init__(self, model_dir, device="cpu"):
        self.dev = torch.device(device)  # 'cuda' runs the reference on a GPU (fp32 products, TF32 off)
        torch.backends.cuda.matmul.allow_tf32 = False
        self.cfg = c = json.load(open(os.path.join(model_dir, "config.json")))
        self.w = {k: v.to(self.dev) for k, v in load_safetensors(model_dir).items()}
        self.nh, self.nkv = c["num_attention_heads"], c["num_key_value_heads"]
        self.hd = c.get("head_dim") or c["hidden_size"] // self.nh
        self.eps = c["rms_norm_eps"]
        self.inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, self.hd, 2, dtype=torch.int64, device=self.dev).float() / self.hd))
        self.head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])

    def ids(self, arr):  # token ids (numpy) as an index tensor on the model's device
        return torch.from_numpy(np.asarray(arr).astype(np.int64)).to(self.dev)

    def norm(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x, cos, sin):  # x (H, T, hd), rotate-half pairing as HF
        h = self.hd // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
        return x * cos + rot * sin

    def rope_tables(self, T):
        freqs = torch.outer(torch.arange(T, device=self.dev).float(), self.inv_freq)
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos(), emb.sin(), torch.full((T, T), float("-inf"), device=self.dev).triu(1)

    def block(self, l, x, tables, w=None, hook=None):
        """Decoder layer l on x (T, d). w: weights by name (default the model's); hook(name, input) is called
        with each linear's input (T, in_features) before it is applied."""
        w = w or self.w
        cos, sin, mask = tables
        T = x.shape[0]
        p = f"model.layers.{l}."

        def lin(name, inp):
            if hook:
                hook(name, inp)
            return inp @ w[p + name + ".weight"].T

        h = self.norm(x, w[p + "input_layernorm.weight"])
        q = lin("self_attn.q_proj", h).view(T, self.nh, self.hd).transpose(0, 1)
        k = lin("self_attn.k_proj", h).view(T, self.nkv, self.hd).transpose(0, 1)
        v = lin("self_attn.v_proj", h).view(T, self.nkv, self.hd).transpose(0, 1)
        q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
        rep = self.nh // self.nkv
        k, v = k.repeat_interleave(rep, 0), v.repeat_interleave(rep, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.hd) + mask, dim=-1) @ v
        x = x + lin("self_attn.o_proj", att.transpose(0, 1).reshape(T, -1))
        h = self.norm(x, w[p + "post_attention_layernorm.weight"])
        g = lin("mlp.gate_proj", h)
        u = lin("mlp.up_proj", h)
        return x + lin("mlp.down_proj", torch.nn.functional.silu(g) * u)

    @torch.no_grad()
    def logits(self, ids, last=None):  # logits of every position, or of the last `last` positions
        x = self.w["model.embed_tokens.weight"][torch.tensor(ids, device=self.dev)]
        tables = self.rope_tables(len(ids))
        for l in range(self.cfg["num_hidden_layers"]):
            x = self.block(l, x, tables)
        if last is not None:
            x = x[-last:]
        return self.norm(x, self.w["model.norm.weight"]) @ self.head.T


def score(model, tok, ctx, cont, max_length=2048):
    whole = [tok.bos] + tok.encode(ctx + cont)
    n_ctx = 1 + len(tok.encode(ctx))
    n = max(0, len(whole) - n_ctx)
    truncated = len(whole) > max_length
    whole = whole[-max_length:]
    if n == 0:
        return 0.0, True, truncated
    lp = torch.log_softmax(model.logits(whole[:-1], last=n).double(), dim=-1)
    tgt = model.ids(whole[-n:])
    rows = lp[-n:]
    return float(rows.gather(1, tgt[:, None]).sum()), bool((rows.argmax(-1) == tgt).all()), truncated


def data_dir(a):
    return a.data or ref_tasks.find_data()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default=None)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--tasks", default=",".join(ref_tasks.TASKS))
    ap.add_argument("--compare", default=None, help="lowbit's per-example log (JSONL)")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok = SpmBpe(os.path.join(a.model, "tokenizer.model"))
    model = Llama(a.model)
    if a.selftest:
        refs = json.load(open(os.path.join(a.model, "..", "..", "refs", os.path.basename(a.model.rstrip("/")) + ".json")))
        g = refs["golden"]
        ids = g["input_ids"]
        lp = torch.log_softmax(model.logits(ids).double(), -1)
        got = [float(lp[i, ids[i + 1]]) for i in range(len(ids) - 1)]
        print("max |next_logprob diff| vs transformers:", max(abs(x - y) for x, y in zip(got, g["next_logprob"])))
        # The golden ids are the first 64 tokens of the WikiText-2 stream (rows line+"\n", blank -> "", joined
        # with "\n\n"); the first 4000 characters determine them.
        lines = open(os.path.join(data_dir(a), "wikitext-2-raw", "wiki.test.raw"), encoding="utf-8").read().split("\n")
        rows = [(l + "\n") if l.strip() else "" for l in lines[:40]]
        text = "\n\n".join(rows)[:4000]
        print("tokenizer matches the golden input_ids:", ([tok.bos] + tok.encode(text))[:64] == ids)
        return
    data = data_dir(a)
    ours = {}
    if a.compare:
        for line in open(a.compare):
            r = json.loads(line)
            ours[(r["task"], r["doc_id"])] = r
    tasks = a.tasks.split(",")
    acc, accn, worst = {}, {}, 0.0
    subj_acc = {}
    for r in ref_tasks.requests(data, a.n):
        t = r["task"]
        if t not in tasks:
            continue
        res = [score(model, tok, c, x) for c, x in zip(r["contexts"], r["continuations"])]
        lps = [x[0] for x in res]
        if t == "lambada":
            acc.setdefault(t, []).append(float(res[0][1]))
        else:
            acc.setdefault(t, []).append(float(int(np.argmax(lps)) == r["gold"]))
            if t in ("piqa", "arc_easy", "arc_challenge", "hellaswag"):  # lm-eval's MultipleChoiceTask ones
                norm = [lp / len(ct) for lp, ct in zip(lps, r["choice_texts"])]
                accn.setdefault(t, []).append(float(int(np.argmax(norm)) == r["gold"]))
        # lowbit's MMLU doc_id counts through the subjects' kept questions; ref_tasks yields n per subject too.
        if t == "mmlu":
            subj_acc.setdefault(r["subject"], []).append(acc[t][-1])
        key = (t, r["doc_id"])
        if key in ours:
            d = max(abs(x - y) for x, y in zip(lps, ours[key]["logprobs"]))
            worst = max(worst, d)
            if d > 1e-3:
                print(f"{t} {r['doc_id']}: logprobs ref {lps} ours {ours[key]['logprobs']}")
        if r["doc_id"] < 5:
            print(t, r["doc_id"], [round(x, 4) for x in lps])
    for t in acc:
        print(f"{t}: n={len(acc[t])} acc={np.mean(acc[t]):.4f}" + (f" acc_norm={np.mean(accn[t]):.4f}" if t in accn else ""))
    if subj_acc:
        means = {k: np.mean(v) for k, v in subj_acc.items()}
        for g, subs in MMLU_GROUPS.items():
            m = [means[k] for k in means if MMLU_SUBCATEGORY[k] in subs]
            print(f"mmlu {g}: {len(m)} subjects, mean over subjects {np.mean(m):.4f}")
        print(f"mmlu: mean over subjects {np.mean(list(means.values())):.4f}, over questions {np.mean(acc['mmlu']):.4f}")
    if ours:
        print(f"max |logprob difference| vs lowbit: {worst:.2e}")


if __name__ == "__main__":
    main()
