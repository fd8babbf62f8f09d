"""llama.cpp vs transformers: generation speed of the same zoo model, F32 and Q8_0, in one run.

    .venv/bin/python benchmarks/bench_gguf.py [--model tiny-chat] [--new 128] [--repeats 3]

Exports the model to GGUF (F32 and Q8_0, a temporary folder), then generates ``--new`` tokens greedily from the
same prompts with transformers (``model.generate``, KV cache, labkit's one-thread setting for small models) and
with llama.cpp (llama-cpp-python's token generator, one thread). Prints tokens/s for each (the median of the
repeats, each prompt once per repeat, interleaved so background load hits all alike), the ratios against
transformers, the file sizes, and whether the F32 greedy tokens are the same. Timings on a shared machine are
noisy: compare the ratios of one run, never absolute figures across runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROMPTS = ["Once upon a time", "The harbor master of Stoneford", "Mira Vell lives in"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny-chat")
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    from labkit import models
    from labkit.generate import one_thread_if_small
    from labkit.gguf import export_gguf

    lm = models.load(args.model)
    net, tok = lm.model, lm.tokenizer
    tmp = Path(tempfile.mkdtemp(prefix="bench-gguf-"))
    files = {q: export_gguf(args.model, tmp / f"{q}.gguf", q) for q in ("f32", "q8_0")}
    llms = {q: models.load(f"gguf:{e.path}").model for q, e in files.items()}

    def run_hf(prompt):
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad(), one_thread_if_small(net):
            t = time.perf_counter()
            out = net.generate(**ids, max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False,
                               pad_token_id=tok.pad_token_id)
            dt = time.perf_counter() - t
        return out[0, ids["input_ids"].shape[1]:].tolist(), dt

    def run_gguf(llm, prompt):
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        got = []
        t = time.perf_counter()
        for tid in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
            got.append(int(tid))  # no stop token: the same number of tokens as transformers' min_new_tokens
            if len(got) >= args.new:
                break
        return got, time.perf_counter() - t

    run_hf(PROMPTS[0]), [run_gguf(llm, PROMPTS[0]) for llm in llms.values()]  # warm-up
    eos = net.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    rates = {"transformers": [], "llama.cpp f32": [], "llama.cpp q8_0": []}
    same = 0
    for _ in range(args.repeats):
        for p in PROMPTS:
            ref, dt = run_hf(p)
            rates["transformers"].append(len(ref) / dt)
            for q, llm in llms.items():
                got, dt = run_gguf(llm, p)
                rates[f"llama.cpp {q}"].append(len(got) / dt)
                if q == "f32":  # up to the first end token: past it transformers' min_new_tokens forbids ends
                    k = next((i for i, t in enumerate(got) if t in eos), min(len(got), len(ref)))
                    same += got[:k] == ref[:k]
    med = {k: statistics.median(v) for k, v in rates.items()}
    base = med["transformers"]
    print(f"{args.model}: {lm.num_parameters:,} parameters, {args.new} new tokens greedy, "
          f"{len(PROMPTS)} prompts x {args.repeats} repeats, one thread each")
    for k, v in med.items():
        size = "" if k == "transformers" else f"   file {files[k.split()[-1]].bytes / 1024**2:.2f} MiB"
        print(f"  {k:<16} {v:8.0f} tokens/s   {v / base:5.2f}x transformers{size}")
    print(f"  F32 greedy tokens (to the first end token) identical to transformers on {same}/{len(PROMPTS) * args.repeats} runs")
    for e in files.values():
        e.path.unlink()
    tmp.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
