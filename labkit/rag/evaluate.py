"""Measured retrieval quality: recall@k, MRR and nDCG@k for dense, BM25, hybrid and reranked retrieval, and
exact match / F1 of the answers, on the shipped QA set (or yours).

A QA item is ``{"question", "answer", "evidence": [{"doc", "start", "end", "entity"}, ...]}`` (and optionally
``"chunks"``: relevant chunk ids per evidence fact, used when the index does not hold the evidence's
documents). A chunk is relevant to a fact when it contains the fact's sentence and names its entity
(``labkit.rag.kb.relevant``), so the same labels score any chunking.

- recall@k: the share of an item's facts that have a relevant chunk in the top k (single-hop: hit or miss);
- MRR: 1 / rank of the first relevant chunk (0 if none in the top 10);
- nDCG@k: binary gains, each fact counted once (duplicate overlapping chunks earn nothing), ideal = all facts first;
- EM / F1: SQuAD-style normalised exact match and token F1 of the answer against the gold answer.
"""
from __future__ import annotations

import math
import re
import string
import time
from collections import Counter
from dataclasses import dataclass, field

from ..errors import LabkitUsageError
from .index import RERANK_DEPTH, Fusion, Hit, Index, Retrieval

ALL_MODES = ("dense", "bm25", "hybrid", "rerank")


def normalize(text: str) -> str:
    text = str(text).lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(pred: str, gold: str) -> float:
    return float(normalize(pred) == normalize(gold))


def f1(pred: str, gold: str) -> float:
    p, g = normalize(pred).split(), normalize(gold).split()
    common = sum((Counter(p) & Counter(g)).values())
    if not p or not g or not common:
        return float(p == g)
    prec, rec = common / len(p), common / len(g)
    return 2 * prec * rec / (prec + rec)


def relevant_sets(index: Index, item: dict) -> list[set[str]]:
    """Per evidence fact, the chunk ids of ``index`` that answer it."""
    from .kb import relevant

    out = []
    for n, ev in enumerate(item["evidence"]):
        if ev["doc"] in index.docs:
            out.append({c.id for c in index.chunks if c.doc_id == ev["doc"] and relevant(c, ev)})
        else:
            out.append(set((item.get("chunks") or [[]] * (n + 1))[n]))
    return out


def score_ranking(ids: list[str], facts: list[set[str]], k: int) -> dict:
    found = [any(cid in f for cid in ids[:k]) for f in facts]
    recall = sum(found) / len(facts)
    rr = 0.0
    for r, cid in enumerate(ids[:10]):
        if any(cid in f for f in facts):
            rr = 1.0 / (r + 1)
            break
    dcg, covered = 0.0, set()
    for r, cid in enumerate(ids[:k]):
        for j, f in enumerate(facts):
            if j not in covered and cid in f:
                covered.add(j)
                dcg += 1.0 / math.log2(r + 2)
                break
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(facts))))
    return {"recall": recall, "all": float(all(found)), "mrr": rr, "ndcg": dcg / ideal if ideal else 0.0}


@dataclass
class EvalResult:
    """Mean metrics per retriever (``table[mode][metric]``), answer EM/F1, and per-question rows."""

    k: int
    n: int
    table: dict[str, dict[str, float]]
    answers: dict[str, float] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    description: str = ""

    def recall(self, mode: str) -> float:
        return self.table[mode]["recall"]

    def __repr__(self):
        k = self.k
        lines = [f"retrieval quality on {self.n} questions{(' (' + self.description + ')') if self.description else ''}"
                 f", k={k}", f"{'retriever':<10} {'recall@' + str(k):>9} {'MRR':>7} {'nDCG@' + str(k):>8}"]
        for mode, m in self.table.items():
            lines.append(f"{mode:<10} {m['recall']:>9.3f} {m['mrr']:>7.3f} {m['ndcg']:>8.3f}")
        if self.answers:
            lines.append(f"answers ({self.answers.get('method', '')} from {self.answers.get('from', '')}): "
                         f"EM {self.answers['em']:.3f}  F1 {self.answers['f1']:.3f}")
        lines.append(f"({self.seconds:.1f} s)")
        return "\n".join(lines)

    def _repr_html_(self):
        import html

        k = self.k
        rows = "".join(f"<tr><td>{html.escape(mode)}</td><td>{m['recall']:.3f}</td><td>{m['mrr']:.3f}</td>"
                       f"<td>{m['ndcg']:.3f}</td></tr>" for mode, m in self.table.items())
        ans = (f"<div>answers ({html.escape(str(self.answers.get('method', '')))}): EM {self.answers['em']:.3f}, "
               f"F1 {self.answers['f1']:.3f}</div>" if self.answers else "")
        return (f"<div><b>retrieval quality</b> on {self.n} questions, k={k} {html.escape(self.description)}</div>"
                f"<table><tr><th>retriever</th><th>recall@{k}</th><th>MRR</th><th>nDCG@{k}</th></tr>{rows}</table>"
                f"{ans}<div><small>{self.seconds:.1f} s</small></div>")


def evaluate(index: Index | None = None, qa: list[dict] | None = None, *, k: int = 5,
             modes=ALL_MODES, answer: str | None = "extractive", answer_from: str | None = None,
             hops: int | None = None, split: str | None = None, limit: int | None = None,
             description: str = "") -> EvalResult:
    """Score retrieval (and answers) on a QA set. Defaults: the shipped knowledge base (recursive chunking,
    the fusion weights tuned on the dev split) and the shipped QA set (``split='dev'|'test'`` for one half).
    ``answer=None`` skips answering; ``answer_from`` picks the ranking the answer reads (default: reranked
    when measured, else hybrid)."""
    from . import kb

    t0 = time.perf_counter()
    if index is None:
        index = kb.knowledge_base_index()
    if qa is None:
        qa = kb.qa_set(hops, split=split)
    if limit:
        qa = qa[:limit]
    if not qa:
        raise LabkitUsageError("the QA set is empty: give items with a question, an answer and evidence")
    modes = tuple(modes)
    bad = [m for m in modes if m not in ALL_MODES]
    if bad:
        raise LabkitUsageError(f"unknown retriever {bad[0]!r}; choose from {', '.join(ALL_MODES)}")
    rerank = "rerank" in modes
    answer_from = answer_from or ("rerank" if rerank else "hybrid")
    sums = {m: Counter() for m in modes}
    ans_sum = Counter()
    rows = []
    from .index import encoder

    enc = encoder()
    questions = [enc.truncate(" ".join(it["question"].split()))[0] for it in qa]
    if rerank:
        qvecs, qtoks = enc.encode_both(questions)  # one batched pass for all questions
    else:
        qvecs, qtoks = enc.encode(questions), [None] * len(questions)
    for item, qv, qt in zip(qa, qvecs, qtoks):
        facts = relevant_sets(index, item)
        ret = index.search(item["question"], k=max(k, 10), mode="hybrid", rerank=rerank, _encoded=(qv, qt))
        row = {"id": item.get("id"), "question": item["question"], "hops": item.get("hops", 1)}
        for m in modes:
            ids = [h.id for h in ret.by_retriever[m]]
            s = score_ranking(ids, facts, k)
            sums[m].update(s)
            row[m] = s["recall"]
        if answer:
            hits = ret.by_retriever[answer_from][:k]
            pred = _answer(index, item["question"], hits, answer, qv)
            em, fs = exact_match(pred, item["answer"]), f1(pred, item["answer"])
            ans_sum.update({"em": em, "f1": fs})
            row.update(answer=pred, gold=item["answer"], em=em, f1=fs)
        rows.append(row)
    n = len(qa)
    table = {m: {key: sums[m][key] / n for key in ("recall", "all", "mrr", "ndcg")} for m in modes}
    answers = {"em": ans_sum["em"] / n, "f1": ans_sum["f1"] / n, "method": answer, "from": answer_from} if answer else {}
    return EvalResult(k, n, table, answers, rows, time.perf_counter() - t0, description)


def _answer(index: Index, question: str, hits: list[Hit], how: str, qvec=None) -> str:
    from .answer import extractive, extractive_rules, generate_answer, grounded
    from .reader import IDK

    if how == "extractive":
        return extractive(question, hits, qvec)[0]
    if how == "rules":
        return extractive_rules(question, hits, qvec)[0]
    said = generate_answer(how, question, hits)[0]
    return said if grounded(said, hits) else IDK  # as answer_question: no uncited answer


def multi_query(index: Index, queries: list[str], k: int = 5, mode: str = "hybrid") -> Retrieval:
    """Query rewriting / RAG-fusion: search with several phrasings and fuse their rankings by RRF."""
    queries = [q for q in queries if q and q.strip()]
    if not queries:
        raise LabkitUsageError("multi_query needs at least one query")
    rets = [index.search(q, k=max(k, 10), mode=mode) for q in queries]
    fused = Index.fuse([r.hits for r in rets], max(k, 10))
    by = {mode: fused, **{f"q{i + 1}": r.hits for i, r in enumerate(rets)}}
    return Retrieval(" | ".join(queries), mode, k, False, by, [], sum(r.seconds for r in rets))


@dataclass
class TuneResult:
    """What ``tune_fusion`` chose, and the whole sweep (for a plot): ``hybrid_sweep`` rows are
    ``(dense_share, rrf_k, recall, mrr, ndcg)``; ``rerank_sweep`` rows are ``(rerank, recall, mrr, ndcg)``."""

    fusion: Fusion
    k: int
    n: int
    hybrid_sweep: list[tuple] = field(default_factory=list)
    rerank_sweep: list[tuple] = field(default_factory=list)
    seconds: float = 0.0

    def __repr__(self):
        best_h = max(self.hybrid_sweep, key=lambda r: (r[2], r[4], r[3]))
        equal = next((r for r in self.hybrid_sweep if abs(r[0] - 0.5) < 1e-9 and r[1] == 60), None)
        lines = [f"fusion tuned on {self.n} questions: {self.fusion}",
                 f"  hybrid recall@{self.k}: {best_h[2]:.3f} with dense share {best_h[0]:.2f}, rrf_k {best_h[1]:g}"]
        if equal:
            lines.append(f"  (equal votes, rrf_k 60: {equal[2]:.3f})")
        if self.rerank_sweep:
            best_r = next(r for r in self.rerank_sweep if r[0] == self.fusion.rerank)
            lines.append(f"  reranked nDCG@{self.k}: {best_r[3]:.3f} (recall@{self.k} {best_r[1]:.3f}) with "
                         f"{best_r[0]:.1f} of the vote to MaxSim")
        lines.append(f"  ({self.seconds:.1f} s)")
        return "\n".join(lines)


def tune_fusion(index: Index, qa: list[dict], *, k: int = 5, shares=None, rrf_ks=(10, 20, 60),
                rerank_shares=None, rerank: bool = True) -> TuneResult:
    """Choose the hybrid weights (dense share w, BM25 share 1 - w, and rrf_k) and the reranker's share of the
    final vote by a grid search on labelled questions ``qa`` (use a *dev* split, and judge the result on
    other questions). The first stage feeds the reranker, so it is tuned for **recall@k** (then nDCG@k, MRR;
    ties go to the weights closest to equal votes); the reranker's job is the order, so its share is tuned for
    **nDCG@k** (then recall@k, MRR; ties go to the larger share). The chosen ``Fusion`` is returned (not applied: set
    ``index.fusion = result.fusion``).

    Every question is retrieved and its candidates MaxSim-scored once; the sweep re-fuses those lists with
    ``Index.fuse``, exactly as ``Index.search`` does."""
    import numpy as np

    from .index import encoder

    t0 = time.perf_counter()
    if not qa:
        raise LabkitUsageError("tune_fusion needs labelled questions (for example rag.qa_set(split='dev'))")
    index._need_chunks()
    shares = [round(x, 2) for x in np.arange(0, 1.0001, 0.05)] if shares is None else list(shares)
    rerank_shares = [round(x, 1) for x in np.arange(0.1, 1.0001, 0.1)] if rerank_shares is None else list(rerank_shares)
    depth = max(k, RERANK_DEPTH, 10)
    enc = encoder()
    questions = [enc.truncate(" ".join(it["question"].split()))[0] for it in qa]
    if rerank:
        qvecs, qtoks = enc.encode_both(questions)
    else:
        qvecs, qtoks = enc.encode(questions), [None] * len(questions)
    prepared = []
    for item, q, qv, qt in zip(qa, questions, qvecs, qtoks):
        dense = index.dense(q, depth, np.asarray(qv, dtype=np.float32).reshape(1, -1))
        sparse = index.bm25(" ".join(item["question"].split()), depth)
        ms = {}
        if rerank:
            cands = {h.id: h.chunk for h in dense + sparse}
            ms = dict(zip(cands, index.maxsim(q, list(cands.values()), qt)))
        prepared.append((relevant_sets(index, item), dense, sparse, ms))

    def mean(rankings):
        tot = Counter()
        for (facts, *_), ids in zip(prepared, rankings):
            tot.update(score_ranking(ids, facts, k))
        n = len(prepared)
        return tot["recall"] / n, tot["mrr"] / n, tot["ndcg"] / n

    def hybrid(w, rk):
        return [Index.fuse([d, s], depth, rk, [w, 1 - w]) for _, d, s, _ in prepared]

    sweep = []
    for rk in rrf_ks:
        for w in shares:
            r, m, n = mean([[h.id for h in hy[:10]] for hy in hybrid(w, rk)])
            sweep.append((w, rk, r, m, n))
    best = max(sweep, key=lambda t: (round(t[2], 9), round(t[4], 9), round(t[3], 9), -abs(t[0] - 0.5), t[1]))
    w, rk = best[0], best[1]
    rsweep = []
    b_best = 1.0
    if rerank:
        first = hybrid(w, rk)
        for b in rerank_shares:
            ranks = []
            for (_, _, _, ms), hy in zip(prepared, first):
                order = sorted(hy, key=lambda h: -ms[h.id])
                maxsim = [Hit(h.chunk, ms[h.id], i + 1) for i, h in enumerate(order)]
                final = maxsim if b >= 1 else Index.fuse([hy, maxsim], len(hy), rk, [1 - b, b])
                ranks.append([h.id for h in final[:10]])
            rsweep.append((b, *mean(ranks)))
        b_best = max(rsweep, key=lambda t: (round(t[3], 9), round(t[1], 9), round(t[2], 9), t[0]))[0]
    fusion = Fusion(dense=float(w), bm25=round(1 - float(w), 2), rrf_k=rk, rerank=float(b_best))
    return TuneResult(fusion, k, len(qa), sweep, rsweep, time.perf_counter() - t0)
