"""Training throughput of the zoo recipe vs a plain hand-written PyTorch loop on the same model.

    .venv/bin/python benchmarks/bench_zoo_train.py [--steps 30] [--size full|micro]

Prints tokens/s and model-FLOPs utilisation (6 x parameters x tokens/s) against this machine's measured fp32 matmul
peak (170 GFLOP/s on 2 cores; ``--peak`` to change, ``--measure-peak`` to re-measure), and the ratio
recipe / plain loop (1.00 = the recipe adds no overhead). Same model, same batches, same thread count.
"""
from __future__ import annotations

import argparse
import time


def measure_peak(n: int = 1024, reps: int = 20) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t)


def plain_loop(model, data, steps: int, batch_size: int, lr: float = 1e-3) -> float:
    """The reference: forward, cross-entropy, backward, AdamW step. Returns seconds."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    model.train()
    t = time.perf_counter()
    for step in range(steps):
        x = data[(step * batch_size) % (data.shape[0] - batch_size):][:batch_size]
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--size", choices=["full", "micro"], default="full")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--peak", type=float, default=170e9)
    p.add_argument("--measure-peak", action="store_true")
    args = p.parse_args(argv)

    import copy

    import torch

    from labkit.zoo.build import RECIPES
    from labkit.zoo.train import model_config, new_model, train

    torch.set_num_threads(args.threads)
    peak = measure_peak() if args.measure_peak else args.peak
    R = RECIPES["full" if args.size == "full" else "quick"]
    cfg = model_config(R["size"], None, **R["overrides"])
    bs, seq = R["batch_size"], R["seq_len"]
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, cfg.vocab_size, (bs * (args.steps + args.warmup) + bs, seq), generator=g)
    base = new_model(cfg, 0)
    n = sum(q.numel() for q in base.parameters())

    rows = []
    for name in ("plain loop", "zoo recipe", "plain loop", "zoo recipe"):  # interleaved: fair under load
        model = copy.deepcopy(base)
        if name == "plain loop":
            plain_loop(model, data, args.warmup, bs)
            secs = plain_loop(model, data, args.steps, bs)
        else:
            train(model, data, steps=args.warmup, batch_size=bs, log_every=0)
            secs = train(model, data, steps=args.steps, batch_size=bs, log_every=0).seconds
        rows.append((name, args.steps * bs * seq / secs))
    best = {k: max(v for n_, v in rows if n_ == k) for k in ("plain loop", "zoo recipe")}
    print(f"model: {n:,} parameters, batch {bs} x {seq}, {args.threads} threads, peak {peak / 1e9:.0f} GFLOP/s")
    print(f"{'loop':<12} {'tokens/s':>10} {'MFU':>6}")
    for k, v in best.items():
        print(f"{k:<12} {v:>10,.0f} {6 * n * v / peak:>6.0%}")
    print(f"ratio zoo recipe / plain loop: {best['zoo recipe'] / best['plain loop']:.2f} (target ~1.0); "
          f"MFU target >= 50 %")


if __name__ == "__main__":
    main()
