"""Spine benchmarks (issue 2), printed as a table.

1. `%load_ext labkit` in a fresh kernel process (target <= 0.5 s), and that it imports no torch/transformers.
2. `%%tokenize` on 1 MB of text vs calling the same tokenizer directly: time ratio (target <= 1.3) and the payload
   sent to the front end in bytes. Measured for cl100k (tiktoken) and bert (HF tokenizers), best of N runs, in
   one process, alternating the two so machine noise hits both.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

LOAD_CODE = """
import time, sys
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
t = time.perf_counter()
ip.run_line_magic('load_ext', 'labkit')
dt = time.perf_counter() - t
heavy = [m for m in ('torch', 'transformers', 'langchain', 'faiss', 'peft', 'trl') if m in sys.modules]
print(f'{dt:.4f} {",".join(heavy) or "-"}')
"""


def bench_load_ext(runs: int = 5):
    times, heavy = [], set()
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", LOAD_CODE], capture_output=True, text=True, check=True)
        dt, h = out.stdout.split()
        times.append(float(dt))
        if h != "-":
            heavy.update(h.split(","))
    return min(times), statistics.median(times), sorted(heavy)


def one_mb_text() -> str:
    from labkit.zoo.corpus import Corpus

    docs = Corpus(seed=1).pretrain_docs("train", mix={"story": 3, "encyclopedia": 1})
    parts, size = [], 0
    while size < 1_000_000:
        d = next(docs).replace("<|endoftext|>", "")
        parts.append(d)
        size += len(d.encode())
    return "".join(parts)[:1_000_000]


def bench_tokenize(name: str, text: str, runs: int = 7):
    from IPython.core.getipython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    from labkit import tokenize as tk
    from labkit.widgets import payload_bytes

    start_ipython()
    ip = get_ipython()
    if "tokenize" not in ip.magics_manager.magics["cell"]:
        ip.run_line_magic("load_ext", "labkit")
    t = tk.get(name)
    if name == "cl100k":
        direct = lambda: t.enc.encode_ordinary(text)  # noqa: E731  tiktoken, as a user would call it
    else:
        direct = lambda: t.hf.encode(text, add_special_tokens=False)  # noqa: E731  transformers fast tokenizer

    def magic():
        res = ip.run_cell_magic("tokenize", name, text + "\n")
        return res, res._repr_mimebundle_()  # what the front end is sent: widget state + fallbacks

    direct(); magic()  # warm up both (tokenizer load, widget class)
    td, tm = [], []
    for _ in range(runs):
        a = time.perf_counter(); direct(); td.append(time.perf_counter() - a)
        a = time.perf_counter(); res, bundle = magic(); tm.append(time.perf_counter() - a)
    payload = payload_bytes(res.widget())
    fallback = len(bundle["text/html"].encode()) + len(bundle["text/plain"].encode())
    return min(td), min(tm), payload, fallback, res.n_tokens


def main():
    import transformers

    transformers.logging.set_verbosity_error()  # the direct call warns that 1 MB exceeds BERT's 512 positions
    best, med, heavy = bench_load_ext()
    print("== %load_ext labkit (fresh process, 5 runs)")
    print(f"{'best s':>8s} {'median s':>9s} {'target':>7s}  heavy modules imported")
    print(f"{best:8.3f} {med:9.3f} {'<= 0.5':>7s}  {', '.join(heavy) or 'none'}")
    text = one_mb_text()
    print(f"\n== %%tokenize on {len(text.encode()):,} bytes of text vs the tokenizer called directly (best of 7)")
    print(f"{'tokenizer':10s} {'tokens':>9s} {'direct s':>9s} {'magic s':>8s} {'ratio':>6s} {'target':>7s} "
          f"{'widget payload B':>17s} {'html+text fallback B':>21s}")
    for name in ("cl100k", "bert"):
        d, m, payload, fallback, n = bench_tokenize(name, text)
        print(f"{name:10s} {n:9,d} {d:9.3f} {m:8.3f} {m / d:6.2f} {'<= 1.3':>7s} {payload:17,d} {fallback:21,d}")


if __name__ == "__main__":
    main()
