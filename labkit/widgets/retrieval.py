"""The retrieval explorer: the question, each retriever's chunks side by side (rank, score, source, position),
query terms highlighted, the answer with its citations. Hover a chunk to see it in the other columns."""
from __future__ import annotations

import html as _html
import re

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


# --------------------------------------------------------------------------------------------- result views
def _items(result) -> list:
    return list(result.results) if hasattr(result, "results") else [result]


def widget(result, **kwargs):
    return RetrievalWidget.from_results(_items(result), **kwargs)


def html(result) -> str:
    """The question, each retriever's chunks side by side (query terms marked), the answer with its citations."""
    return html_rows(_items(result))


RETRIEVER_LABELS = {"dense": "dense (MiniLM + FAISS)", "bm25": "BM25", "hybrid": "hybrid (RRF)",
                    "rerank": "reranked (MaxSim)"}


def highlight(text: str, qterms: set[str]) -> str:
    out, pos = [], 0
    for m in re.finditer(r"[A-Za-z0-9]+", text):
        out.append(_html.escape(text[pos:m.start()]))
        w = m.group()
        out.append(f"<mark>{_html.escape(w)}</mark>" if w.lower() in qterms else _html.escape(w))
        pos = m.end()
    out.append(_html.escape(text[pos:]))
    return "".join(out)


def html_rows(results, max_chars: int = 260) -> str:
    from ..rag.index import terms

    parts = ['<div class="labkit-rag-static" style="font-family:sans-serif;font-size:13px">']
    for r in results:
        ret = r.retrieval
        q = set(terms(r.retrieval.question))
        parts.append(f"<div><b>Q:</b> {_html.escape(r.question)}</div>")
        if r.rewritten:
            parts.append(f"<div style='color:#555'>searched as: {_html.escape(r.rewritten)}</div>")
        cites = ", ".join(r.citations) or "no citation"
        parts.append(f"<div><b>A:</b> {_html.escape(r.answer)} <span style='color:#555'>[{_html.escape(cites)}] "
                     f"({_html.escape(r.method)})</span></div>")
        for note in r.notices + ret.notices:
            parts.append(f"<div style='color:#92400e'>notice: {_html.escape(note)}</div>")
        parts.append("<table style='border-collapse:collapse;margin:4px 0'><tr>")
        cols = list(ret.by_retriever)
        for c in cols:
            star = " ★" if c == ret.final else ""
            parts.append(f"<th style='text-align:left;padding:2px 6px'>{RETRIEVER_LABELS.get(c, c)}{star}</th>")
        parts.append("</tr><tr>")
        for c in cols:
            parts.append("<td style='vertical-align:top;padding:2px 6px;max-width:22em'>")
            for h in ret.by_retriever[c][: ret.k]:
                cited = "border-left:3px solid #16a34a;" if h.id in r.citations else ""
                text = h.chunk.text if len(h.chunk.text) <= max_chars else h.chunk.text[:max_chars] + "…"
                parts.append(f"<div style='margin:3px 0;padding:2px 4px;{cited}'><b>{h.rank}.</b> "
                             f"<code>{_html.escape(h.id)}</code> <small>score {h.score:.3f} · char "
                             f"{h.chunk.start}</small><br>{highlight(text, q)}</div>")
            parts.append("</td>")
        parts.append("</tr></table>")
    parts.append("</div>")
    return "".join(parts)
