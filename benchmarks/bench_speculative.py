"""Speculative decoding with the zoo's draft/target pair (tiny-draft proposes, tiny-chat-v2 checks).

    .venv/bin/python benchmarks/bench_speculative.py [--target NAME_OR_DIR] [--draft NAME_OR_DIR] [--n 24] [--k 4]

Prints, on the same prompts (reading questions and calculator requests from the training generator, greedy,
up to 32 new tokens): the acceptance rate and tokens per target pass of labkit.speculative (and that its output
equals plain greedy decoding), then wall time of plain greedy ``generate`` vs transformers' assisted generation
(``assistant_model=draft``, with KV caches) in one run, and their ratio (the speed-up).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="tiny-chat-v2")
    ap.add_argument("--draft", default="tiny-draft")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-new", type=int, default=32)
    args = ap.parse_args()

    import torch

    from labkit import models
    from labkit.speculative import speculative_generate
    from labkit.zoo import formats as F
    from labkit.zoo.reading import Reading

    torch.set_num_threads(2)
    tgt, dr = models.load(args.target), models.load(args.draft)
    tok = tgt.tokenizer
    if tok.get_vocab() != dr.tokenizer.get_vocab():
        raise SystemExit("the draft and the target do not share a tokenizer")
    rd = Reading(3)
    chats = rd.chat_examples(args.n, mix={"cqa": 0.6, "calc": 0.25, "followup": 0.15}, stream="bench-spec")
    prompts = []
    for m in chats:
        upto = next(i for i in range(len(m) - 1, -1, -1) if m[i]["role"] == "user")
        prompts.append(F.format_chat(m[:upto + 1], add_generation_prompt=True))
    end = [tok.convert_tokens_to_ids(F.END)]
    enc = [tok(p, add_special_tokens=False, return_tensors="pt")["input_ids"] for p in prompts]
    gen = dict(max_new_tokens=args.max_new, do_sample=False, eos_token_id=end, pad_token_id=tok.pad_token_id)

    # correctness and acceptance: labkit.speculative vs plain greedy
    same = 0
    total = None
    with torch.no_grad():
        for ids in enc:
            plain = tgt.model.generate(ids, **gen)[0, ids.shape[1]:].tolist()
            spec, st = speculative_generate(tgt.model, dr.model, ids, max_new_tokens=args.max_new, k=args.k,
                                            eos_token_id=end)
            same += spec[0, ids.shape[1]:].tolist() == plain
            total = st if total is None else type(st)(*(getattr(total, f) + getattr(st, f) for f in
                                                        ("new_tokens", "proposed", "accepted", "target_calls",
                                                         "draft_calls", "seconds")))
    print(f"target {args.target} ({tgt.num_parameters / 1e6:.2f}M), draft {args.draft} "
          f"({dr.num_parameters / 1e6:.2f}M), {len(enc)} prompts, k={args.k}")
    print(f"labkit.speculative: {total}; identical to greedy on {same}/{len(enc)} prompts")

    # speed: plain greedy vs transformers' assisted generation, the same prompts, one run
    def run(**extra):
        t0 = time.perf_counter()
        n_new = 0
        with torch.no_grad():
            for ids in enc:
                out = tgt.model.generate(ids, **gen, **extra)
                n_new += out.shape[1] - ids.shape[1]
        return time.perf_counter() - t0, n_new

    run()  # warm-up
    t_plain, n_plain = run()
    dr.model.generation_config.num_assistant_tokens = args.k
    dr.model.generation_config.num_assistant_tokens_schedule = "constant"
    t_assist, n_assist = run(assistant_model=dr.model)
    print(f"plain greedy     : {n_plain} tokens in {t_plain:.2f} s = {n_plain / t_plain:,.0f} tokens/s")
    print(f"assisted (draft) : {n_assist} tokens in {t_assist:.2f} s = {n_assist / t_assist:,.0f} tokens/s")
    print(f"speed-up (plain time / assisted time): {t_plain / t_assist:.2f}x")


if __name__ == "__main__":
    main()
