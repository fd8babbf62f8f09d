"""Static views of RAG results (HTML and text) for places without a widget front end (nbconvert, CI)."""
from __future__ import annotations

import html
import re

from .index import terms

RETRIEVER_LABELS = {"dense": "dense (MiniLM + FAISS)", "bm25": "BM25", "hybrid": "hybrid (RRF)",
                    "rerank": "reranked (MaxSim)"}


def highlight(text: str, qterms: set[str]) -> str:
    out, pos = [], 0
    for m in re.finditer(r"[A-Za-z0-9]+", text):
        out.append(html.escape(text[pos:m.start()]))
        w = m.group()
        out.append(f"<mark>{html.escape(w)}</mark>" if w.lower() in qterms else html.escape(w))
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def html_view(results, max_chars: int = 260) -> str:
    parts = ['<div class="labkit-rag-static" style="font-family:sans-serif;font-size:13px">']
    for r in results:
        ret = r.retrieval
        q = set(terms(r.retrieval.question))
        parts.append(f"<div><b>Q:</b> {html.escape(r.question)}</div>")
        if r.rewritten:
            parts.append(f"<div style='color:#555'>searched as: {html.escape(r.rewritten)}</div>")
        cites = ", ".join(r.citations) or "no citation"
        parts.append(f"<div><b>A:</b> {html.escape(r.answer)} <span style='color:#555'>[{html.escape(cites)}] "
                     f"({html.escape(r.method)})</span></div>")
        for note in r.notices + ret.notices:
            parts.append(f"<div style='color:#92400e'>notice: {html.escape(note)}</div>")
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
                             f"<code>{html.escape(h.id)}</code> <small>score {h.score:.3f} · char "
                             f"{h.chunk.start}</small><br>{highlight(text, q)}</div>")
            parts.append("</td>")
        parts.append("</tr></table>")
    parts.append("</div>")
    return "".join(parts)


def bundle(results, owner) -> dict:
    from ..widgets import mimebundle

    return mimebundle("\n\n".join(repr(r) for r in results), html_view(results), owner.widget)
