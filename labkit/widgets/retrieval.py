"""The retrieval explorer: the question, each retriever's chunks side by side (rank, score, source, position),
query terms highlighted, the answer with its citations. Hover a chunk to see it in the other columns."""
from __future__ import annotations

import anywidget
import numpy as np
import traitlets

from . import asset, pack_strings, u32

LABELS = {"dense": "dense · MiniLM + FAISS", "bm25": "BM25", "hybrid": "hybrid · RRF", "rerank": "reranked · MaxSim"}


def encode_item(result) -> dict:
    from ..rag.index import terms

    ret = result.retrieval
    columns = []
    for name, hits in ret.by_retriever.items():
        hits = hits[: ret.k]
        texts, texts_off = pack_strings([h.chunk.text.encode("utf-8") for h in hits])
        ids, ids_off = pack_strings([h.id.encode("utf-8") for h in hits])
        columns.append({
            "name": name, "label": LABELS.get(name, name), "count": len(hits),
            "ranks": u32(h.rank for h in hits), "starts": u32(h.chunk.start for h in hits),
            "scores": np.asarray([h.score for h in hits], dtype="<f4").tobytes(),
            "texts": texts, "texts_off": texts_off, "ids": ids, "ids_off": ids_off,
        })
    return {
        "question": result.question, "rewritten": result.rewritten or "", "answer": result.answer,
        "citations": list(result.citations), "method": result.method, "final": ret.final, "k": ret.k,
        "notices": list(result.notices) + list(ret.notices), "terms": sorted(set(terms(ret.question))),
        "evidence": result.evidence if result.method in ("extractive", "rules") else "", "columns": columns,
        # True: the answer occurs in a cited chunk; False: it does not (withheld); None: declined ("I don't know")
        "faithful": getattr(result, "faithful", None), "said": getattr(result, "said", ""),
        "score": getattr(result, "score", None),
    }


class RetrievalWidget(anywidget.AnyWidget):
    _esm = asset("retrieval.js")
    _css = asset("retrieval.css")

    items = traitlets.List(traitlets.Dict()).tag(sync=True)
    max_chars = traitlets.Int(320).tag(sync=True)  # chunk text shown before "more"

    @classmethod
    def from_results(cls, results, **kwargs):
        w = cls(items=[encode_item(r) for r in results], **kwargs)
        w._results = list(results)
        return w

    def __repr__(self):
        return "\n\n".join(repr(r) for r in getattr(self, "_results", []))
