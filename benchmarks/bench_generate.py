"""%%generate vs model.generate: tokens per second and labkit's overhead (target ≤ 10 %).

    python benchmarks/bench_generate.py                 # tiny-base (a random model of the same shape if missing)
    python benchmarks/bench_generate.py --tokens 128 --repeat 5

Three ways of producing the same greedy continuation, interleaved and repeated (median):

1. ``model.generate`` called directly (the floor);
2. ``labkit.generate.generate`` with a streaming callback (the engine);
3. the ``%%generate`` cell magic in an IPython shell, streaming into a display handle (what a learner runs).

All three produce identical tokens (checked), so tokens/s compare like for like. The step-through mode
(``--step``: logits, hidden states and the logit lens at every step) is shown for information: it does more work
on purpose. Also the KV cache on/off timing.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stdout

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "Once upon a time, there was a baker named Mira. She"


def model_name(arg: str | None) -> str:
    if arg:
        return arg
    from labkit.errors import LabkitError
    from labkit.models import load

    try:
        load("tiny-base")
        return "tiny-base"
    except LabkitError:
        from labkit.models import load_tokenizer
        from labkit.zoo.train import model_config, new_model

        folder = tempfile.mkdtemp(prefix="bench-tiny-")
        tok = load_tokenizer("tiny")
        new_model(model_config("tiny", tok)).save_pretrained(folder)
        tok.save_pretrained(folder)
        print(f"(tiny-base is not built yet: using a randomly initialised model of the same shape in {folder})")
        return folder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared, busy machine 2 threads spin against other processes "
                         "and run ~10× slower, which buries the overhead being measured)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from IPython.core.interactiveshell import InteractiveShell

    from labkit.generate import generate, kv_cache_timing
    from labkit.models import load

    name = model_name(args.model)
    lm = load(name)
    net, tok = lm.model, lm.tokenizer
    enc = tok(PROMPT, return_tensors="pt")
    n = args.tokens
    pad = net.generation_config.pad_token_id
    # min_new_tokens keeps every run the same length whatever the model predicts; the engine gets the same
    # through max_new_tokens only, so compare the token ids (a trained model may stop early: then all stop early)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "labkit")

    def direct():
        with torch.no_grad():
            out = net.generate(**enc, max_new_tokens=n, do_sample=False, pad_token_id=pad)
        return out[0, enc["input_ids"].shape[1]:].tolist()

    def engine():
        return generate(PROMPT, lm, max_new_tokens=n, temperature=0, on_text=lambda chunk: None).token_ids

    def magic():
        with redirect_stdout(io.StringIO()):  # the plain shell prints display updates; a notebook sends messages
            r = shell.run_cell_magic("generate", f"--model {name} --max-new-tokens {n} --temperature 0", PROMPT)
        return r.token_ids

    ways = {"model.generate (direct)": direct, "labkit.generate.generate (engine, streaming)": engine,
            "%%generate magic (streaming display)": magic}
    for fn in ways.values():  # warm-up
        fn()
    times = {k: [] for k in ways}
    ids = {}
    for _ in range(args.repeat):
        for k, fn in ways.items():
            t0 = time.perf_counter()
            ids[k] = fn()
            times[k].append(time.perf_counter() - t0)
    same = len({tuple(v) for v in ids.values()}) == 1
    n_tok = len(ids["model.generate (direct)"])
    t_step = []
    for _ in range(max(1, args.repeat // 2)):
        t0 = time.perf_counter()
        generate(PROMPT, lm, max_new_tokens=n, temperature=0, step=True)
        t_step.append(time.perf_counter() - t0)

    base = statistics.median(times["model.generate (direct)"])
    print(f"\n%%generate vs model.generate · {name} · greedy · {n_tok} new tokens · median of {args.repeat} · "
          f"{torch.get_num_threads()} torch thread(s)\n")
    print("| how | seconds | tokens/s | overhead vs direct |")
    print("|---|---|---|---|")
    for k, ts in times.items():
        m = statistics.median(ts)
        print(f"| {k} | {m:.3f} | {n_tok / m:.0f} | {100 * (m / base - 1):+.1f} % |")
    m = statistics.median(t_step)
    print(f"| --step (logits + logit lens every step; information) | {m:.3f} | {n_tok / m:.0f} | "
          f"{100 * (m / base - 1):+.1f} % |")
    print(f"\nsame tokens from all three: {same}")
    kv = kv_cache_timing(PROMPT, lm, max_new_tokens=n)
    print(repr(kv))
    worst = max(statistics.median(times[k]) for k in list(ways)[1:])
    print(f"\ntarget overhead ≤ 10 %: {100 * (worst / base - 1):+.1f} % → {'PASS' if worst / base <= 1.10 else 'FAIL'}"
          f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: noisy)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
