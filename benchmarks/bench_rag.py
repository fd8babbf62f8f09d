"""RAG benchmarks (issue 6). Prints tables; no assertions.

1. Index build time for N chunks (default 10,000): chunking, MiniLM embedding (batched), FAISS, BM25.
2. Query latency p50/p95, retrieval only (query vectors precomputed), labkit dense vs LangChain's FAISS vector
   store (``langchain_community.vectorstores.FAISS``) on the same vectors: ratio = labkit / LangChain (target ≤ 1.0).
   Hybrid and reranked latencies are printed for reference.
3. Retrieval quality on the shipped QA set: the fusion weights are tuned on its dev split
   (``rag.tune_fusion``), then recall@5 / MRR / nDCG@5 of dense, BM25, hybrid, reranked are printed on the
   test split (never tuned on), the dev split and all, with equal-vote RRF beside the tuned fusion; the two
   checks "hybrid ≥ max(dense, BM25)" and "reranked ≥ hybrid", reported as measured.

    python benchmarks/bench_rag.py [--n 10000] [--queries 200] [--skip-quality]
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np


def synthetic_chunks(n: int) -> list[tuple[str, str]]:
    """n documents of one chunk each (~300 characters), from the zoo corpus stories and encyclopedia."""
    from labkit.zoo.corpus import Corpus

    c = Corpus(seed=7)
    r = random.Random(7)
    out = []
    while len(out) < n:
        text = c.story(r)
        out.append((f"doc-{len(out):05d}", text[:400]))
    return out


def pct(values, q):
    return float(np.percentile(np.asarray(values), q))


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--skip-quality", action="store_true")
    args = p.parse_args(argv)

    import labkit.rag as rag
    from labkit.rag.index import encoder

    enc = encoder()
    docs = synthetic_chunks(args.n)
    ix = rag.Index("recursive", size=400, overlap=0, name="bench")
    t0 = time.perf_counter()
    report = ix.add(docs)
    t_add = time.perf_counter() - t0
    t0 = time.perf_counter()
    ix.dense_index()
    t_faiss = time.perf_counter() - t0
    t0 = time.perf_counter()
    ix.bm25_index()
    t_bm25 = time.perf_counter() - t0
    print(f"\n1. index build, {len(ix):,} chunks ({ix.faiss_kind} FAISS)")
    print(f"   {'chunk + embed (MiniLM, batched)':34s} {t_add:8.1f} s   ({len(ix) / t_add:,.0f} chunks/s)")
    print(f"   {'FAISS index':34s} {t_faiss:8.3f} s")
    print(f"   {'BM25 index':34s} {t_bm25:8.3f} s")
    print(f"   {'total':34s} {t_add + t_faiss + t_bm25:8.1f} s   ({report.chunks_embedded:,} chunks embedded)")

    # 2. latency, retrieval only
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy

    from labkit.rag.interop import MiniLMEmbeddings

    lc = FAISS.from_embeddings([(c.text, v.tolist()) for c, v in zip(ix.chunks, ix.vectors)], MiniLMEmbeddings(),
                               metadatas=[{"chunk_id": c.id} for c in ix.chunks],
                               distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)
    r = random.Random(1)
    questions = [f"What did {r.choice(['Mira', 'Tam', 'Leo', 'Ada', 'Finn'])} find near the "
                 f"{r.choice(['river', 'market', 'old bridge', 'garden'])}?" for _ in range(args.queries)]
    qvecs = enc.queries(questions)
    k = 5
    for q, v in zip(questions[:5], qvecs[:5]):  # warm up both
        ix.dense(q, k, v)
        lc.similarity_search_by_vector(v.tolist(), k=k)
    ours, theirs = [], []
    for q, v in zip(questions, qvecs):  # interleaved, so background load hits both alike
        t0 = time.perf_counter()
        ix.dense(q, k, v)
        ours.append(time.perf_counter() - t0)
        vl = v.tolist()
        t0 = time.perf_counter()
        lc.similarity_search_by_vector(vl, k=k)
        theirs.append(time.perf_counter() - t0)
    same = sum(set(h.id for h in ix.dense(q, k, v)) ==
               {d.metadata["chunk_id"] for d in lc.similarity_search_by_vector(v.tolist(), k=k)}
               for q, v in zip(questions[:50], qvecs[:50]))
    hyb, rer = [], []
    for q in questions[:50]:
        t0 = time.perf_counter()
        ix.search(q, k=k, mode="hybrid")
        hyb.append(time.perf_counter() - t0)
    for q in questions[:20]:
        t0 = time.perf_counter()
        ix.search(q, k=k, mode="hybrid", rerank=True)
        rer.append(time.perf_counter() - t0)
    print(f"\n2. query latency, k={k}, {len(ix):,} chunks, {len(questions)} queries (ms)")
    print(f"   {'':36s} {'p50':>8s} {'p95':>8s}")
    print(f"   {'labkit dense (FAISS, vectors given)':36s} {1e3 * pct(ours, 50):8.3f} {1e3 * pct(ours, 95):8.3f}")
    print(f"   {'LangChain FAISS by vector':36s} {1e3 * pct(theirs, 50):8.3f} {1e3 * pct(theirs, 95):8.3f}")
    print(f"   {'ratio labkit / LangChain':36s} {pct(ours, 50) / pct(theirs, 50):8.2f} "
          f"{pct(ours, 95) / pct(theirs, 95):8.2f}   (target <= 1.0)")
    print(f"   same top-{k} sets on 50 queries: {same}/50")
    print(f"   {'labkit hybrid (incl. query embedding)':36s} {1e3 * pct(hyb, 50):8.1f} {1e3 * pct(hyb, 95):8.1f}")
    print(f"   {'labkit hybrid + MaxSim rerank':36s} {1e3 * pct(rer, 50):8.1f} {1e3 * pct(rer, 95):8.1f}")

    if args.skip_quality:
        return 0
    from labkit.rag import Fusion, kb

    ix = kb.knowledge_base_index()
    ix.fusion = Fusion()
    tuned = rag.tune_fusion(ix, kb.qa_set(split="dev"), k=5)
    print(f"\n3. retrieval quality on the shipped QA set, k=5. Fusion weights tuned on the dev split "
          f"({tuned.n} questions): {tuned.fusion}"
          f"{' (= the shipped KB_FUSION)' if tuned.fusion == Fusion(**kb.KB_FUSION) else ' (DIFFERS from KB_FUSION)'}")
    for split in ("test", "dev", None):
        for label, fz in (("equal RRF", Fusion()), ("dev-tuned", tuned.fusion)):
            ix.fusion = fz
            res = rag.evaluate(ix, kb.qa_set(split=split), k=5, answer="extractive")
            t = res.table
            where = {"test": "TEST split (never tuned on)", "dev": "dev split (tuned on)", None: "all"}[split]
            print(f"\n   {where}, {res.n} questions, fusion {label}")
            print(f"   {'retriever':10s} {'recall@5':>9s} {'MRR':>7s} {'nDCG@5':>7s}")
            for m, row in t.items():
                print(f"   {m:10s} {row['recall']:9.3f} {row['mrr']:7.3f} {row['ndcg']:7.3f}")
            best_single = max(t["dense"]["recall"], t["bm25"]["recall"])
            print(f"   hybrid recall@5 >= max(dense, BM25): {t['hybrid']['recall']:.3f} vs {best_single:.3f} -> "
                  f"{'yes' if t['hybrid']['recall'] >= best_single else 'NO'}")
            print(f"   reranked recall@5 >= hybrid:        {t['rerank']['recall']:.3f} vs {t['hybrid']['recall']:.3f}"
                  f" -> {'yes' if t['rerank']['recall'] >= t['hybrid']['recall'] else 'NO'}")
            print(f"   answers (extractive from reranked): EM {res.answers['em']:.3f}  F1 {res.answers['f1']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
