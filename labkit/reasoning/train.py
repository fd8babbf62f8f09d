"""Train ``tiny-reasoner``: a character-level Llama (162k parameters) that works through calculator chains
(``3+5*2+4``, left to right) with (``C:``) or without (``D:``) its chain of thought. Two stages, a curriculum:

    python -m labkit.reasoning.train --task sums --steps 1400 --no-eval --out /tmp/tiny-reasoner-stage1
    python -m labkit.reasoning.train --init /tmp/tiny-reasoner-stage1 --steps 300 --lr 2e-3 --no-eval \
        --out labkit/zoo/weights/tiny-reasoner

Stage 1 learns the format and addition on sums of digits (328 s measured); stage 2 starts from it and learns
``-``, ``*2`` and ``*3`` (136 s). Both on one CPU thread of a busy 2-core machine (8 min in all); the second
command writes ``train.json`` with both stages' settings and times. Fixed seeds: the same run gives the same
weights (on the same torch build). Stage 2 is short (the time budget of the lab's author, not a plateau): the
model is far from perfect at 4-5 terms, which leaves lab 12's voting and search something to improve.
``early/`` (lab 12's GRPO starting point, half-trained on sums) is stage 1 after 300 steps: add
``--early-step 300`` to the first command and copy ``/tmp/tiny-reasoner-stage1/early`` there.

Data: every step draws ``--batch`` fresh problems of 2-5 terms (``problems.random_problem``, or digit sums for
``--task sums``), never a held-out one (``problems.is_heldout``); each problem appears once as a
chain-of-thought example and once as a direct-answer example, so both modes get the same problems and the same
number of examples. The loss is on the completion only.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

from .problems import Problem, is_heldout, random_problem
from .tokenizer import build

CONFIG = dict(hidden_size=64, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=4, max_position_embeddings=128)


def new_model(tok, seed: int = 0, **overrides):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    args = dict(CONFIG, **overrides)
    cfg = LlamaConfig(vocab_size=len(tok), rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
                      attention_bias=False, mlp_bias=False, hidden_act="silu", initializer_range=0.02,
                      bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **args)
    torch.manual_seed(seed)
    m = LlamaForCausalLM(cfg)
    m.generation_config.eos_token_id = tok.eos_token_id
    m.generation_config.pad_token_id = tok.pad_token_id
    m.generation_config.bos_token_id = None
    return m


def batch_tensors(tok, problems, modes=("cot", "direct")):
    """(input_ids, labels, attention_mask), right-padded; labels -100 on the prompt and the padding."""
    import torch

    rows = []
    for p in problems:
        for mode in modes:
            a = tok(p.prompt(mode), add_special_tokens=False)["input_ids"]
            b = tok(p.completion(mode), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            rows.append((a + b, [-100] * len(a) + b))
    n = max(len(r[0]) for r in rows)
    pad = tok.pad_token_id
    ids = torch.tensor([r[0] + [pad] * (n - len(r[0])) for r in rows])
    lab = torch.tensor([r[1] + [-100] * (n - len(r[1])) for r in rows])
    att = torch.tensor([[1] * len(r[0]) + [0] * (n - len(r[0])) for r in rows])
    return ids, lab, att


def draw(rng, batch, terms=(2, 5), task="calc"):
    """``batch`` training problems: calculator chains (``calc``) or sums of digits only (``sums``)."""
    out = []
    while len(out) < batch:
        if task == "sums":
            p = Problem(tuple(rng.randint(1, 9) for _ in range(rng.randint(*terms))))
        else:
            p = random_problem(rng, rng.randint(*terms))
        if not is_heldout(p):
            out.append(p)
    return out


def train(steps=2400, batch=32, lr=3e-3, seed=0, early_step=(), on_early=None, log_every=100, threads=1,
          task="calc", init=None, stop_at=None):
    import torch

    torch.set_num_threads(threads)
    tok = build(calc=task != "sums")
    if init:  # stage 2: start from a stage-1 model (its vocabulary is a prefix of this one)
        from transformers import LlamaForCausalLM

        model = LlamaForCausalLM.from_pretrained(str(init))
        torch.manual_seed(seed)
        model.resize_token_embeddings(len(tok), mean_resizing=False)
        model.config.vocab_size = len(tok)
    else:
        model = new_model(tok, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, min(100, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    rng = random.Random(seed)
    model.train()
    losses, t0 = [], time.perf_counter()
    stopped = []
    import signal

    old = signal.signal(signal.SIGTERM, lambda *a: stopped.append(True))  # `timeout`: save what there is
    for step in range(1, steps + 1):
        if stopped or (stop_at and step > stop_at):
            print(f"stopped at step {step - 1}" + (" (SIGTERM)" if stopped else ""), flush=True)
            break
        ids, lab, att = batch_tensors(tok, draw(rng, batch, task=task))
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if log_every and step % log_every == 0:
            print(f"step {step}: loss {sum(losses[-log_every:]) / log_every:.4f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        if on_early and step in early_step:
            on_early(model, tok, step)
    signal.signal(signal.SIGTERM, old)
    model.eval()
    return model, tok, losses, time.perf_counter() - t0


def save(model, tok, folder):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--early-step", type=int, default=600)
    ap.add_argument("--snapshots", default="", help="more steps to save (snap-STEP/), to choose --early-step")
    ap.add_argument("--task", default="calc", choices=["calc", "sums"])
    ap.add_argument("--init", help="a stage-1 model folder to start from")
    ap.add_argument("--stop-at", type=int, help="stop after this many steps (the schedule still spans --steps)")
    ap.add_argument("--no-eval", action="store_true", help="skip the held-out accuracy table at the end")
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest for this small model on a busy machine")
    a = ap.parse_args(argv)
    out = Path(a.out)

    snaps = [int(x) for x in a.snapshots.split(",") if x.strip()]

    def on_early(model, tok, step):
        model.eval()
        save(model, tok, out / ("early" if step == a.early_step else f"snap-{step}"))
        model.train()
        print(f"saved the step-{step} model", flush=True)

    model, tok, losses, seconds = train(a.steps, a.batch, a.lr, a.seed, {a.early_step, *snaps}, on_early,
                                        threads=a.threads, task=a.task, init=a.init, stop_at=a.stop_at)
    save(model, tok, out)
    from .evaluate import accuracy_table

    table = None if a.no_eval else accuracy_table(model, tok, n=30)
    info = dict(vars(a), steps_done=len(losses), terms=[2, 5], seconds=round(seconds, 1), final_loss=sum(losses[-100:]) / min(100, len(losses)),
                config=CONFIG, accuracy_heldout_greedy=table)
    if a.init and (Path(a.init) / "train.json").is_file():  # the whole recipe in one file
        info["stage1"] = {k: v for k, v in json.loads((Path(a.init) / "train.json").read_text()).items()
                          if k != "accuracy_heldout_greedy"}
    (out / "train.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
