"""KV cache vs full recompute, greedy, on a zoo model (default tiny-chat-v2).

    .venv/bin/python benchmarks/bench_kvcache.py [--model NAME_OR_DIR] [--new 256] [--prompt 16] [--threads 1]

Generates ``--new`` tokens after a ``--prompt``-token prompt three ways, one run each after a warm-up, and prints
the time to the 32nd, 64th, ... token of each: labkit.inference's KV cache (the kit's version of lab 14's
exercise), full recompute (every step runs the whole sequence), and transformers' ``generate(use_cache=True)``;
then the speed-up at ``--new`` tokens as a ratio (no-cache time / cache time) with both figures, and the cache's
size against the config's bytes per token. The three outputs are checked to be the same tokens.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny-chat-v2")
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from labkit import inference as inf
    from labkit import models
    from labkit.zoo import formats as F

    torch.set_num_threads(args.threads)
    lm = models.load(args.model)
    model, tok = lm.model, lm.tokenizer
    text = F.format_chat([{"role": "user", "content": "Tell me about the harbour town and the people who live there."}],
                         add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :args.prompt]
    if ids.shape[1] + args.new > model.config.max_position_embeddings:
        raise SystemExit(f"prompt + new tokens exceed the model's {model.config.max_position_embeddings} positions")
    marks = sorted({n for n in (32, 64, 128, 192, 256, 384) if n < args.new} | {args.new})
    inf.greedy_with_cache(model, ids, 8)  # warm-up
    inf.greedy_no_cache(model, ids, 8)
    out = {}

    def ours(c):
        out["cache"] = inf.greedy_with_cache(model, ids, args.new, clock=c)

    def recompute(c):
        out["none"] = inf.greedy_no_cache(model, ids, args.new, clock=c)

    def hf(c):
        out["hf"] = inf.hf_greedy(model, ids, args.new, streamer=inf.StepClock(c))

    t = {"KV cache (labkit)": inf.time_to_n_tokens(ours, marks),
         "full recompute": inf.time_to_n_tokens(recompute, marks),
         "transformers use_cache": inf.time_to_n_tokens(hf, marks)}
    same = torch.equal(out["cache"][0], out["none"]) and torch.equal(out["cache"][0], out["hf"].sequences)
    print(f"{args.model} ({lm.num_parameters / 1e6:.2f}M parameters), {ids.shape[1]}-token prompt, "
          f"{torch.get_num_threads()} thread(s); same tokens all three ways: {same}")
    print("seconds to the n-th new token")
    print(f"{'n':>24}" + "".join(f"{n:>8}" for n in marks))
    for name, ts in t.items():
        print(f"{name:>24}" + "".join(f"{x:8.2f}" for x in ts))
    c, n, h = t["KV cache (labkit)"][-1], t["full recompute"][-1], t["transformers use_cache"][-1]
    print(f"KV-cache speed-up at {args.new} tokens: {n / c:.2f}x (full recompute {n:.2f} s / KV cache {c:.2f} s; "
          f"{args.new / c:,.0f} vs {args.new / n:,.0f} tokens/s; transformers with its cache {h:.2f} s)")
    cache = out["cache"][2]
    print(f"cache: {cache.nbytes:,} bytes for {len(cache)} positions = {cache.nbytes // len(cache):,} bytes per position "
          f"(config: {inf.kv_bytes_per_token(model.config, torch.finfo(model.dtype).bits // 8):,})")


if __name__ == "__main__":
    main()
