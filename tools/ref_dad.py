#!/usr/bin/env python3
"""Reference for DB-LLM's Deviation-Aware Distillation loss (tests/train/dad_test.cpp), by PyTorch autograd.

DB-LLM (Chen et al. 2024, arXiv 2402.11960, §3.3) weights each token's distillation loss by the entropies of
the teacher's and the student's predictions, so that ambiguous tokens count more. As lowbit implements it
(train/grad_ops.h dad_loss_backward, docs/db-llm.md), per row i of logits:
    p_T = softmax(z_T), p_S = softmax(z_S), H(p) = -sum p log p
    w_i = (H(p_T) * H(p_S)) ** gamma             (a constant of the backward: detached)
    loss = sum_i w_i * CE(p_T, p_S),  CE(p_T, p_S) = -sum_j p_T[j] log p_S[j]
Written here the textbook way (log_softmax, entropies from log-probabilities, autograd for the gradient) in
float64, independently of the C++ form (logsumexp identities, one softmax per row, explicit gradient).
Inputs are float32 values from a seeded generator, written exactly, so the C++ test replays them.

Usage: /usr/bin/python3 tools/ref_dad.py > tests/train/dad_ref.json
"""
import json

import torch


def case(name, m, V, gamma, scale, seed, spread):
    g = torch.Generator().manual_seed(seed)
    zs = (torch.randn(m, V, generator=g) * spread).to(torch.float32)
    zt = (torch.randn(m, V, generator=g) * spread).to(torch.float32)
    if name == "peaked":  # one near one-hot teacher row and one student row: entropies near 0
        zt[0, 3] += 40.0
        zs[1, 7] += 40.0
    s = zs.double().clone().requires_grad_(True)
    t = zt.double()
    log_ps, log_pt = torch.log_softmax(s, -1), torch.log_softmax(t, -1)
    h_t = -(log_pt.exp() * log_pt).sum(-1)
    h_s = -(log_ps.exp() * log_ps).sum(-1)
    w = (h_t * h_s).clamp(min=0) ** gamma
    ce = -(log_pt.exp() * log_ps).sum(-1)
    loss = (w.detach() * ce).sum()
    (loss * scale).backward()
    return {
        "name": name, "m": m, "V": V, "gamma": gamma, "scale": scale,
        "zs": zs.flatten().tolist(), "zt": zt.flatten().tolist(),
        "loss": loss.item(), "ce": ce.sum().item(), "weights": w.tolist(),
        "grad": s.grad.flatten().tolist(),
    }


def main():
    cases = [
        case("gamma1", 6, 97, 1.0, 0.25, 1, 2.0),
        case("gamma0", 4, 64, 0.0, 1.0, 2, 3.0),
        case("gamma2", 5, 130, 2.0, 0.5, 3, 1.0),
        case("peaked", 3, 50, 1.0, 1.0, 4, 1.5),
    ]
    print(json.dumps({"generator": "tools/ref_dad.py", "torch": torch.__version__, "cases": cases}))


if __name__ == "__main__":
    main()
