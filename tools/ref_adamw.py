#!/usr/bin/env python3
"""Reference AdamW trajectories for tests/train/optim_test.cpp, computed by PyTorch itself.

Each case runs torch.optim.AdamW (foreach=False: _single_tensor_adamw, the loop lowbit mirrors) under a
torch.optim.lr_scheduler.LambdaLR whose lambda is transformers' constant or cosine schedule with warmup, with
torch.nn.utils.clip_grad_norm_ before every step, in the Trainer's order: clip, optimizer.step(),
scheduler.step(). Parameters and gradients are float32 tensors from a seeded generator, written out exactly
(a Python float holds any float32), so the C++ test replays the same inputs. transformers is not needed: its
two lr_lambda functions are short and restated below from transformers/optimization.py.

Usage: /usr/bin/python3 tools/ref_adamw.py > tests/train/adamw_ref.json
"""
import json
import math

import torch


def constant_with_warmup(warmup):
    # get_constant_schedule_with_warmup's lr_lambda
    return lambda step: step / max(1.0, warmup) if step < warmup else 1.0


def cosine_with_warmup(warmup, total, cycles=0.5):
    # get_cosine_schedule_with_warmup's lr_lambda
    def f(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        progress = float(step - warmup) / float(max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(cycles) * 2.0 * progress)))

    return f


def run_case(name, sizes, cfg, schedule, max_norm, grad_scales, seed):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen, dtype=torch.float32)) for n in sizes]
    init = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"],
                            weight_decay=cfg["weight_decay"], foreach=False)
    if schedule["kind"] == "constant":
        lam = constant_with_warmup(schedule["warmup_steps"])
    else:
        lam = cosine_with_warmup(schedule["warmup_steps"], schedule["total_steps"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    steps = []
    for scale in grad_scales:
        grads = [torch.randn(n, generator=gen, dtype=torch.float32) * scale for n in sizes]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        steps.append({
            "lr": lr,
            "grads": [g.tolist() for g in grads],
            "norm": float(norm),
            "params": [p.detach().tolist() for p in params],
        })
    state = [opt.state[p] for p in params]
    return {
        "name": name,
        "config": cfg,
        "schedule": schedule,
        "max_norm": max_norm,
        "params": [{"name": f"p{i}", "init": t.tolist()} for i, t in enumerate(init)],
        "steps": steps,
        "final_exp_avg": [s["exp_avg"].tolist() for s in state],
        "final_exp_avg_sq": [s["exp_avg_sq"].tolist() for s in state],
    }


def main():
    cases = [
        # Cosine decay over 8 steps after 2 of warmup, weight decay, and gradients whose global norm is
        # sometimes above max_norm 1 (clipped) and sometimes below (left alone).
        run_case("cosine_wd_clip", [5, 19, 64],
                 {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
                 {"kind": "cosine", "warmup_steps": 2, "total_steps": 8}, 1.0,
                 [3.0, 0.05, 1.0, 0.2, 5.0, 0.01, 0.5, 2.0], seed=1),
        # qlora-like: constant rate after ceil(8 * 0.3) = 3 warmup steps, no decay, no clipping in effect,
        # small gradients so that eps matters, other betas.
        run_case("constant_warmup", [7, 33],
                 {"lr": 2e-4, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6, "weight_decay": 0.0},
                 {"kind": "constant", "warmup_steps": math.ceil(8 * 0.3), "total_steps": 8}, 1e9,
                 [1e-3, 2e-5, 1e-4, 5e-4, 1e-6, 3e-4], seed=2),
    ]
    print(json.dumps({"settings": f"tools/ref_adamw.py, torch {torch.__version__}", "cases": cases}))


if __name__ == "__main__":
    main()
