#!/usr/bin/env python3
"""Independent reference for lowbit's task requests (issue 4), written from lm-evaluation-harness v0.3's task
definitions with the Python standard library only (the semantics lowbit's C++ re-implements: str.strip(),
re.sub, csv, len()).

  python3 tools/ref_tasks.py [--data DIR] [--n 5]              print the first n requests of each task (JSONL)
  python3 tools/ref_tasks.py --compare OURS.jsonl              compare with lowbit's dump (see check_ref_tasks.sh)

Each line: {"task", "doc_id", "contexts": [...], "continuations": [...], "choice_texts": [...], "gold"}.
MMLU doc_ids count through the subjects in sorted order, n per subject.
"""
import argparse
import csv
import json
import os
import re
import sys

TASKS = ["piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "mmlu", "lambada"]


def find_data():
    d = os.path.abspath(os.getcwd())
    while True:
        cand = os.path.join(d, "shared", "data")
        if os.path.isdir(cand):
            return cand
        parent = os.path.dirname(d)
        if parent == d:
            sys.exit("shared/data not found; pass --data")
        d = parent


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def mc(context, choices, gold):
    return {"contexts": [context] * len(choices), "continuations": [" " + c for c in choices],
            "choice_texts": list(choices), "gold": gold}


def piqa(data):
    rows = jsonl(f"{data}/piqa/valid.jsonl")
    labels = [int(l) for l in open(f"{data}/piqa/valid-labels.lst") if l.strip()]
    for d, lab in zip(rows, labels):
        yield mc("Question: " + d["goal"] + "\nAnswer:", [d["sol1"], d["sol2"]], lab)


def arc(data, which):
    for d in jsonl(f"{data}/arc/ARC-{which}-Test.jsonl"):
        key = {"1": "A", "2": "B", "3": "C", "4": "D", "5": "E"}.get(d["answerKey"], d["answerKey"])
        yield mc("Question: " + d["question"]["stem"] + "\nAnswer:", [c["text"] for c in d["question"]["choices"]],
                 ["A", "B", "C", "D", "E"].index(key))


def hs_preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def hellaswag(data):
    # llama.cpp's text form: the context line stands for activity_label + ": " + ctx (ctx_b not capitalised).
    lines = open(f"{data}/hellaswag/hellaswag_val_full.txt", encoding="utf-8").read().split("\n")
    for i in range(0, len(lines) - 5, 6):
        yield mc(hs_preprocess(lines[i]), [hs_preprocess(e) for e in lines[i + 2:i + 6]], int(lines[i + 1]))


def winogrande(data):
    for d in jsonl(f"{data}/winogrande/dev.jsonl"):
        i = d["sentence"].index("_")
        target = " " + d["sentence"][i + 1:].strip()
        ctxs = [d["sentence"][:i] + d["option1"], d["sentence"][:i] + d["option2"]]
        yield {"contexts": ctxs, "continuations": [target, target], "choice_texts": [target[1:]] * 2,
               "gold": int(d["answer"]) - 1}


def mmlu(data, n, shots=5):
    subjects = sorted(f[:-len("_test.csv")] for f in os.listdir(f"{data}/mmlu/test") if f.endswith("_test.csv"))
    for s in subjects:
        def rows(split):
            with open(f"{data}/mmlu/{split}/{s}_{split}.csv", newline="", encoding="utf-8") as f:
                return [r for r in csv.reader(f) if r]

        def fmt(r):
            return r[0].strip() + "".join(f"\n{l}. {c}" for l, c in zip("ABCD", r[1:5])) + "\nAnswer:"

        prefix = f"The following are multiple choice questions (with answers) about {' '.join(s.split('_'))}.\n\n"
        for r in rows("dev")[:shots]:
            prefix += fmt(r) + " " + r[5] + "\n\n"
        for r in rows("test")[:n]:
            yield dict(mc(prefix + fmt(r), ["A", "B", "C", "D"], "ABCD".index(r[5])), subject=s)


def lambada(data):
    for line in open(f"{data}/lambada/lambada_test_plain_text.txt", encoding="utf-8"):
        text = line.rstrip("\n")
        if not text:
            continue
        ctx, word = text.rsplit(" ", 1)
        yield {"contexts": [ctx], "continuations": [" " + word], "choice_texts": [word], "gold": 0}


def requests(data, n):
    gens = {"piqa": lambda: piqa(data), "arc_easy": lambda: arc(data, "Easy"),
            "arc_challenge": lambda: arc(data, "Challenge"), "hellaswag": lambda: hellaswag(data),
            "winogrande": lambda: winogrande(data), "mmlu": lambda: mmlu(data, n), "lambada": lambda: lambada(data)}
    for task in TASKS:
        for i, r in enumerate(gens[task]()):
            if task != "mmlu" and i >= n:
                break
            yield dict(task=task, doc_id=i, **r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--compare", default=None, help="lowbit's dump (JSONL, same fields)")
    a = ap.parse_args()
    data = a.data or find_data()
    ref = list(requests(data, a.n))
    if not a.compare:
        for r in ref:
            print(json.dumps(r, ensure_ascii=False))
        return
    ours = {(r["task"], r["doc_id"]): r for r in jsonl(a.compare)}
    bad = 0
    for r in ref:
        o = ours.get((r["task"], r["doc_id"]))
        if o is None:
            print(f"missing in ours: {r['task']} {r['doc_id']}")
            bad += 1
            continue
        for k in ("contexts", "continuations", "choice_texts", "gold"):
            if k == "choice_texts" and r["task"] == "winogrande":
                continue  # acc only: not used
            if o[k] != r[k]:
                print(f"{r['task']} {r['doc_id']} {k} differs:\n  ref:  {r[k]!r}\n  ours: {o[k]!r}")
                bad += 1
    print(f"{len(ref)} requests compared, {bad} differences")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
