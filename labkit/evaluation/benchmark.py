"""A multiple-choice benchmark in MMLU's shape, built from the zoo's world, run through lm-evaluation-harness.

``zoo_mc``: about 100 questions, four options each, one right. Two parts:

- **world** (closed book): facts about the people and towns of the zoo's world (``labkit.zoo.corpus.world()``),
  asked without the passage: only a model that *remembers* the world can beat chance (25 %). The three wrong
  options are values of the same kind (other jobs, other towns, other years ...).
- **reading** (built apart from the world): a short passage about people and towns that do not exist in the world
  (``Corpus.context_qa`` on the held-out ``test`` split), then the question; the answer is in the passage. A wrong
  option is, where the passage has one, the same fact about the *other* person in it (a distractor that a reader
  has to tell apart).

The task ships as YAML (``tasks/zoo_mc.yaml``) over a JSON-lines file (``tasks/zoo_mc.jsonl``), loaded by a
small ``custom_dataset`` function beside them, so ``lm_eval --include_path <that folder> --tasks zoo_mc`` works
from any folder, offline. ``build_items`` regenerates the file (the shipped one is what it gives for seed 0).

``run_lm_eval`` runs zoo models through ``lm_eval.simple_evaluate`` (the harness's ``hf`` model on the local zoo
folder; ``HF_HUB_OFFLINE`` is set for the call) and returns plain results: accuracies and, per question, the
log-likelihood the harness computed for each option (what a learner's scorer is checked against).
"""
from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
MC_FILE = TASKS_DIR / "zoo_mc.jsonl"
PPL_FILE = TASKS_DIR / "zoo_ppl.jsonl"
LETTERS = "ABCD"


# ------------------------------------------------------------------------------------------------ the items
def _world_items(r: random.Random, n: int) -> list[dict]:
    from labkit.zoo.corpus import COLORS, JOBS, ANIMALS, PRODUCTS, FEATURES, world

    w = world()
    people, towns = list(w.people.values()), list(w.towns.values())
    town_names = [t.name for t in towns]
    kinds = [
        ("job", lambda p: f"What is the job of {p.name}?", lambda p: p.job, JOBS, people),
        ("town", lambda p: f"In which town does {p.name} live?", lambda p: p.town, town_names, people),
        ("animal", lambda p: f"What animal does {p.name} have?", lambda p: p.animal, ANIMALS, people),
        ("color", lambda p: f"What is the favorite color of {p.name}?", lambda p: p.color, COLORS, people),
        ("born", lambda p: f"When was {p.name} born?", lambda p: str(p.born), None, people),
        ("product", lambda t: f"What is {t.name} known for?", lambda t: t.product, PRODUCTS, towns),
        ("feature", lambda t: f"Where is {t.name}?", lambda t: t.feature, FEATURES, towns),
    ]
    out, seen = [], set()
    while len(out) < n:
        kind, q, a, pool, ents = kinds[len(out) % len(kinds)]
        ent = r.choice(ents)
        if (ent.name, kind) in seen:
            continue
        seen.add((ent.name, kind))
        answer = a(ent)
        if pool is None:  # years: nearby years, so the options look alike
            wrong = r.sample([str(y) for y in range(int(answer) - 30, int(answer) + 31) if str(y) != answer], 3)
        else:
            wrong = r.sample([v for v in pool if v != answer], 3)
        out.append(_item("world", kind, f"Question: {q(ent)}\nAnswer:", answer, wrong, r))
    return out


def _reading_items(r: random.Random, n: int) -> list[dict]:
    from labkit.zoo.corpus import (ANIMALS, COLORS, FEATURES, JOBS, PERSON_FACTS, PRODUCTS, TOWN_FACTS, Corpus,
                                   random_person_name, random_town)

    out = []
    items = Corpus(seed=11).context_qa("test", 8 * n, stream="lab11-mc")
    pools = {"job": JOBS, "animal": ANIMALS, "color": COLORS, "product": PRODUCTS, "feature": FEATURES}
    for it in items:
        if len(out) >= n:
            break
        q, ans, ctx = it["question"], it["answer"], it["context"]
        kind = next((k for k, (_, qs, _) in {**PERSON_FACTS, **TOWN_FACTS}.items()
                     if any(_same_template(t, q) for t in qs)), None)
        if kind is None or kind == "pet" or ctx.count(". ") > 2:  # short passages: a fast benchmark
            continue
        wrong: list[str] = []
        # the passage's other entity: same relation, other value (a distractor a reader must tell apart)
        for v in _values_in(ctx, kind):
            if v != ans and v not in wrong:
                wrong.append(v)
        while len(wrong) < 3:
            if kind in pools:
                v = r.choice(pools[kind])
            elif kind in ("town",):
                v = random_town(r)
            elif kind in ("friend", "mayor"):
                v = random_person_name(r)[0]
            elif kind == "born":
                v = str(int(ans) + r.choice([-1, 1]) * r.randint(1, 30))
            elif kind == "population":
                v = str(r.randrange(200, 20000))
            else:
                v = None
            if v and v != ans and v not in wrong:
                wrong.append(v)
        out.append(_item("reading", kind, f"Context: {ctx}\nQuestion: {q}\nAnswer:", ans, wrong[:3], r))
    return out


def _same_template(template: str, question: str) -> bool:
    head, _, tail = template.partition("{name}")
    tail = tail.split("{")[0]
    return question.startswith(head) and (not tail or tail.split("'")[0] in question) and "{" not in head


def _values_in(ctx: str, kind: str) -> list[str]:
    import re

    from labkit.zoo.corpus import PERSON_FACTS, TOWN_FACTS

    tmpl = {**PERSON_FACTS, **TOWN_FACTS}[kind][0]
    field_ = {"job": "a_job", "animal": "a_animal"}.get(kind, kind)
    pat = re.escape(tmpl)
    for f in re.findall(r"\\\{(\w+)\\\}", pat):
        grp = f"(?P<v>[^.]+?)" if f == field_ else r"[^.]+?"
        pat = pat.replace(r"\{" + f + r"\}", grp, 1) if f == field_ else pat.replace(r"\{" + f + r"\}", r"[^.]+?")
    vals = []
    for m in re.finditer(pat, ctx):
        v = m.group("v")
        if kind in ("job", "animal"):
            v = v.split(" ", 1)[1] if " " in v else v
            v = v.split(" named ")[0]
        vals.append(v)
    return vals


def _item(part: str, kind: str, question: str, answer: str, wrong: list[str], r: random.Random) -> dict:
    options = [answer] + list(wrong)
    r.shuffle(options)
    return {"part": part, "kind": kind, "question": question, "choices": options,
            "answer": options.index(answer)}


def build_items(n_world: int = 60, n_reading: int = 40, seed: int = 0) -> list[dict]:
    """The benchmark's questions (dicts: part, kind, question, choices, answer index)."""
    r = random.Random(seed)
    return _world_items(r, n_world) + _reading_items(r, n_reading)


def load_items(path: str | os.PathLike | None = None) -> list[dict]:
    """The shipped questions (``tasks/zoo_mc.jsonl``)."""
    with open(path or MC_FILE, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def build_ppl_docs(n: int = 40, seed: int = 0) -> list[str]:
    """Held-out documents for perplexity: stories and context-QA texts of the zoo's validation stream (never
    trained on: the split is a hash of the text)."""
    import itertools

    from labkit.zoo.corpus import Corpus

    stream = Corpus(seed).pretrain_docs("val", mix={"story": 0.7, "qa_text": 0.3})
    return [d.replace("<|endoftext|>", "").strip() for d in itertools.islice(stream, n)]


def write_task_files(folder: str | os.PathLike | None = None) -> list[Path]:
    """(Re)write the JSON-lines files of the shipped tasks (what ships is this for the defaults)."""
    folder = Path(folder) if folder else TASKS_DIR
    out = []
    for name, rows in (("zoo_mc.jsonl", build_items()), ("zoo_ppl.jsonl", [{"text": d} for d in build_ppl_docs()])):
        with open(folder / name, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.append(folder / name)
    return out


# ------------------------------------------------------------------------------------------------ lm-eval
@dataclass
class HarnessRun:
    """What ``lm_eval.simple_evaluate`` said about one model on one task, as plain data."""

    model: str
    task: str
    metrics: dict                    # e.g. {"acc": 0.71, "acc_norm": 0.74} (the harness's names, no ",none")
    loglikelihoods: list = field(default_factory=list, repr=False)   # per question: [ll of each option]
    targets: list = field(default_factory=list, repr=False)          # per question: the right option's index
    seconds: float = 0.0

    def __str__(self) -> str:
        m = ", ".join(f"{k} {v:.3f}" for k, v in self.metrics.items())
        return f"{self.model} on {self.task}: {m} ({len(self.targets)} items, {self.seconds:.1f} s)"


def run_lm_eval(models, tasks=("zoo_mc",), batch_size: int = 16, limit: int | None = None) -> dict:
    """Run zoo models (names of ``labkit.models``) on the shipped tasks through lm-evaluation-harness.

    Returns ``{(model, task): HarnessRun}``. Offline: the zoo folder is a local path, the data ships here, and
    ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` are set for the call."""
    import logging
    import time

    from labkit import models as M

    names = [models] if isinstance(models, str) else list(models)
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        import tqdm

        tqdm_init = tqdm.tqdm.__init__

        def quiet(self, *a, **k):  # the harness's progress bars, off for this call (a notebook shows them as noise)
            k["disable"] = True
            tqdm_init(self, *a, **k)

        tqdm.tqdm.__init__ = quiet

        for name in ("lm-eval", "lm_eval", "lm_eval.evaluator", "lm_eval.api.task"):
            logging.getLogger(name).setLevel(logging.ERROR)
        manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, verbosity="ERROR")
        out = {}
        for name in names:
            path = M.zoo_path(name)
            t0 = time.perf_counter()
            res = lm_eval.simple_evaluate(
                model="hf", model_args=f"pretrained={path},dtype=float32", tasks=list(tasks),
                task_manager=manager, device="cpu", batch_size=batch_size, bootstrap_iters=0, limit=limit,
                log_samples=True, verbosity="ERROR")
            secs = time.perf_counter() - t0
            for task in tasks:
                metrics = {k.split(",")[0]: v for k, v in res["results"][task].items()
                           if "," in k and "stderr" not in k and isinstance(v, (int, float))}
                samples = sorted(res["samples"][task], key=lambda s: s["doc_id"])
                lls = [[float(r[0]) for r in s["filtered_resps"]] for s in samples] \
                    if samples and isinstance(samples[0]["filtered_resps"][0], (list, tuple)) else \
                    [[float(s["filtered_resps"][0])] for s in samples]
                out[(name, task)] = HarnessRun(name, task, metrics, lls, [s.get("target") for s in samples],
                                               secs / len(tasks))
        return out
    finally:
        try:
            tqdm.tqdm.__init__ = tqdm_init
            if bars:
                hf_logging.enable_progress_bar()
        except NameError:  # failed before they were changed
            pass
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ------------------------------------------------------------------------------------------------ checks
def harness_accuracy(run: HarnessRun, items: list[dict], part: str | None = None, norm: bool = False) -> float:
    """acc (or acc_norm: log-likelihood divided by the option's length in characters, as the harness does) recomputed
    from the harness's own per-option log-likelihoods, optionally on one part (``world``/``reading``)."""
    hits = []
    for it, lls, tgt in zip(items, run.loglikelihoods, run.targets):
        if part and it["part"] != part:
            continue
        scores = [ll / len(c) for ll, c in zip(lls, it["choices"])] if norm else lls
        hits.append(max(range(len(scores)), key=lambda i: scores[i]) == tgt)
    return sum(hits) / len(hits)


def mc_agreement(logprob_fn, pick_fn, model, tokenizer, run: HarnessRun, items: list[dict], n: int | None = None,
                 tol: float = 1e-3) -> dict:
    """A learner's scorer against the harness: per-option log-likelihoods (max |difference|), and the accuracy
    their picks give (acc and acc_norm) next to the harness's own on the same items."""
    n = n or len(items)
    worst, acc, accn = 0.0, [], []
    for it, ref, tgt in list(zip(items, run.loglikelihoods, run.targets))[:n]:
        lps = [float(logprob_fn(model, tokenizer, it["question"], " " + c)) for c in it["choices"]]
        worst = max(worst, max(abs(a - b) for a, b in zip(lps, ref)))
        a, b = pick_fn(lps, list(it["choices"]))
        acc.append(a == tgt)
        accn.append(b == tgt)
    if n == len(run.targets):   # the harness's own aggregate
        ref_acc, ref_accn = run.metrics["acc"], run.metrics["acc_norm"]
    else:                       # a prefix: recomputed from its per-option log-likelihoods, by its rule
        ref_acc = harness_accuracy(HarnessRun(run.model, run.task, {}, run.loglikelihoods[:n], run.targets[:n]), items[:n])
        ref_accn = harness_accuracy(HarnessRun(run.model, run.task, {}, run.loglikelihoods[:n], run.targets[:n]),
                                    items[:n], norm=True)
    return {"max_abs_diff": worst, "acc": sum(acc) / n, "acc_norm": sum(accn) / n,
            "harness_acc": ref_acc, "harness_acc_norm": ref_accn, "n": n,
            "ok": worst < tol and abs(sum(acc) / n - ref_acc) < 1e-9 and abs(sum(accn) / n - ref_accn) < 1e-9}


def ppl_agreement(nll_fn, bpb_fn, model, tokenizer, run: HarnessRun, docs: list[str], tol: float = 1e-3) -> dict:
    """A learner's text NLL and bits per byte against the harness's ``loglikelihood_rolling`` on the same docs."""
    import math

    nlls = [nll_fn(model, tokenizer, d) for d in docs]
    worst = max(abs(float(n[0]) + ref[0]) for n, ref in zip(nlls, run.loglikelihoods))
    total = sum(float(n[0]) for n in nlls)
    joined_bpb = float(bpb_fn(total, "".join(docs)))
    bpb_ok = [math.isclose(float(bpb_fn(float(n[0]), d)), -ref[0] / len(d.encode("utf-8")) / math.log(2), rel_tol=1e-3)
              for n, d, ref in zip(nlls, docs, run.loglikelihoods)]
    return {"max_abs_diff": worst, "bits_per_byte": joined_bpb, "harness_bits_per_byte": run.metrics["bits_per_byte"],
            "ok": worst < tol and all(bpb_ok)
            and math.isclose(joined_bpb, run.metrics["bits_per_byte"], rel_tol=1e-3)}
