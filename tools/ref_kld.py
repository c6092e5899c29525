#!/usr/bin/env python3
"""Reference KL divergences for tests/eval/kld_test.cpp, computed with PyTorch in float64.

The logit rows come from integer formulas whose values are exact in float32 (multiples of 1/2048 well inside
2^24), so the C++ test rebuilds bit-identical inputs; the KL is torch.nn.functional.kl_div on log_softmax rows,
i.e. an implementation independent of lowbit's. Usage: tools/ref_kld.py > tests/eval/kld_ref.json
"""
import json

import torch


def base_row(r, V):
    return [((i * 7919 + r * 104729) % 4001 - 2000) / 256.0 for i in range(V)]


def rows(kind, r, V):
    p = base_row(r, V)
    if kind == "near":  # a small perturbation, as a good quantization gives
        q = [p[i] + ((i * 31 + r * 17) % 33 - 16) / 2048.0 for i in range(V)]
    elif kind == "shifted":  # the same plus a constant 5: KL ignores the shift
        q = [p[i] + 5.0 + ((i * 13 + r) % 9 - 4) / 512.0 for i in range(V)]
    elif kind == "far":  # unrelated rows
        q = [((i * 104729 + r * 7919) % 3001 - 1500) / 128.0 for i in range(V)]
    elif kind == "same":
        q = list(p)
    elif kind == "peaked":  # a confident base row: one logit 40 above the rest
        p[r % V] += 40.0
        q = [p[i] + ((i * 31 + r * 17) % 33 - 16) / 2048.0 for i in range(V)]
    else:
        raise ValueError(kind)
    return p, q


def main():
    cases = []
    for kind in ["near", "shifted", "far", "same", "peaked"]:
        for V in [1, 3, 17, 64, 1000, 32000]:
            for r in range(2):
                p, q = rows(kind, r, V)
                tp = torch.tensor(p, dtype=torch.float32).double()
                tq = torch.tensor(q, dtype=torch.float32).double()
                lp, lq = torch.log_softmax(tp, 0), torch.log_softmax(tq, 0)
                kl = torch.nn.functional.kl_div(lq, lp, reduction="sum", log_target=True).item()
                cases.append({"kind": kind, "V": V, "r": r, "kl": kl,
                              "argmax_p": int(torch.argmax(tp).item()), "argmax_q": int(torch.argmax(tq).item())})
    json.dump({"generator": "tools/ref_kld.py", "torch": torch.__version__, "cases": cases},
              open(1, "w"), indent=1)


if __name__ == "__main__":
    main()
