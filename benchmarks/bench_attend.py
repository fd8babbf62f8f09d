"""%%attend vs bertviz: bytes sent to the browser and time until the view's data is ready (MiniLM, 128 and 512 tokens).

    python benchmarks/bench_attend.py            # both sizes, bertviz included (bertviz at 512 needs ~1 GB and ~30 s)
    python benchmarks/bench_attend.py --quick    # 128 tokens only

labkit: one forward pass (eager attention) + the widget's state (float16 buffers; at 512 tokens the model view sends
thumbnails only and each layer on demand). bertviz: the same forward pass + ``model_view(..., html_action="return")``,
whose HTML embeds every attention weight as JSON text (and loads its scripts from a CDN).
Targets: ≥ 20× fewer bytes than bertviz at 128 tokens; at 512 tokens the model view ≤ 10 MB and ≤ 2 s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def text_of(n_tokens: int, tok) -> str:
    from labkit.zoo.corpus import world

    words = world(0).text().split()
    text = " ".join(words[: n_tokens * 2])
    ids = tok(text, add_special_tokens=False)["input_ids"][: n_tokens - 2]  # + [CLS] and [SEP]
    return tok.decode(ids)


def labkit_view(text: str, n: int, view: str):
    from labkit.attend import attend
    from labkit.widgets import payload_bytes
    from labkit.widgets.attention import AttentionWidget

    t0 = time.perf_counter()
    r = attend(text, "minilm", view=view, max_tokens=n)
    w = AttentionWidget.from_result(r, view=view)
    size = payload_bytes(w)  # serialises the state the way the comm sends it
    seconds = time.perf_counter() - t0
    per_layer = r.n_heads * r.n_tokens ** 2 * 2
    return r, size, seconds, per_layer, w.all_layers


def forward_only(text: str, n: int) -> float:
    """The forward pass with attention weights alone: the floor both tools share."""
    import torch

    from labkit.models import load

    lm = load("minilm")
    enc = lm.tokenizer(text, return_tensors="pt", truncation=True, max_length=n)
    lm.model.set_attn_implementation("eager")
    try:
        t0 = time.perf_counter()
        with torch.no_grad():
            lm.model(**enc, output_attentions=True)
        return time.perf_counter() - t0
    finally:
        lm.model.set_attn_implementation("sdpa")


def bertviz_view(text: str, n: int):
    import torch
    from bertviz import model_view

    from labkit.models import load

    lm = load("minilm")
    t0 = time.perf_counter()
    enc = lm.tokenizer(text, return_tensors="pt", truncation=True, max_length=n)
    lm.model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            att = lm.model(**enc, output_attentions=True).attentions
    finally:
        lm.model.set_attn_implementation("sdpa")
    tokens = lm.tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    html = model_view(att, tokens, html_action="return")
    size = len(html.data.encode("utf-8"))
    return size, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="128 tokens only")
    ap.add_argument("--repeat", type=int, default=3, help="labkit runs per size (median)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both tools (default 1: on a shared, busy machine extra threads spin "
                         "against other processes and the forward pass gets many times slower)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from labkit.models import load

    tok = load("minilm").tokenizer
    sizes = [128] if args.quick else [128, 512]
    rows = []
    for n in sizes:
        text = text_of(n, tok)
        view = "head" if n <= 128 else "model"
        runs = [labkit_view(text, n, view) for _ in range(args.repeat)]
        r, lk_bytes, _, per_layer, all_layers = runs[-1]
        lk_s = statistics.median(x[2] for x in runs)
        fwd_s = statistics.median(forward_only(text, n) for _ in range(args.repeat))
        f16 = r.attentions.size * 2
        bv_bytes, bv_s = bertviz_view(text, n)
        rows.append((n, r.n_tokens, view, lk_bytes, lk_s, bv_bytes, bv_s, f16, per_layer, all_layers, fwd_s))
        del r, runs
    print("\n%%attend vs bertviz model_view, all-MiniLM-L6-v2 (6 layers × 12 heads)\n")
    print("| tokens | labkit view | labkit bytes | labkit s | bertviz bytes | bertviz s | bytes ratio | time ratio |"
          " float16 attention | one layer on demand | forward pass alone s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n, nt, view, lb, ls, bb, bs, f16, pl, al, fw in rows:
        print(f"| {nt} | {view}{' (all layers)' if al else ' (thumbnails, layers on demand)'} | {lb / 1e6:.2f} MB | "
              f"{ls:.2f} | {bb / 1e6:.1f} MB | {bs:.2f} | {bb / lb:.0f}× | {bs / ls:.1f}× | {f16 / 1e6:.1f} MB | "
              f"{pl / 1e6:.2f} MB | {fw:.2f} |")
    print()
    print(f"(load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
          f"thread(s); times scale with the load, the forward pass is the floor both tools share)")
    for n, nt, view, lb, ls, bb, bs, f16, pl, al, fw in rows:
        if n == 128:
            print(f"target ≥ 20× fewer bytes at 128 tokens: {bb / lb:.0f}× → {'PASS' if bb / lb >= 20 else 'FAIL'}")
        if n == 512:
            ok = lb <= 10e6 and ls <= 2.0
            print(f"target at 512 tokens: model view ≤ 10 MB and ≤ 2 s: {lb / 1e6:.2f} MB, {ls:.2f} s "
                  f"(of which the forward pass {fw:.2f} s, labkit's own work {max(0.0, ls - fw):.2f} s) → "
                  f"{'PASS' if ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
