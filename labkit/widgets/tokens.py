"""The token view: coloured token spans, hover for id and bytes, a whitespace toggle, counts, paging."""
from __future__ import annotations

import anywidget
import traitlets

from . import asset, pack_strings, u32


def encode_row(result, spans=None, start=None) -> dict:
    """One tokenizer's row of the view: metadata as JSON, token data as binary buffers."""
    spans = result.spans if spans is None else spans
    start = result.window_start if start is None else start
    data, data_off = pack_strings([s.data for s in spans])
    pieces, pieces_off = pack_strings([s.piece.encode("utf-8", "replace") for s in spans])
    gaps, gaps_off = pack_strings([s.gap.encode("utf-8", "replace") for s in spans])
    return {
        "name": result.tokenizer, "description": result.description, "vocab_size": result.vocab_size,
        "n_tokens": result.n_tokens, "n_chars": result.n_chars, "n_bytes": result.n_bytes,
        "chars_per_token": round(result.chars_per_token, 4), "start": start, "count": len(spans),
        "notes": list(result.notes),
        "unknown": bytes(1 if s.unknown else 0 for s in spans),
        "ids": u32(s.id for s in spans), "data": data, "data_off": data_off,
        "pieces": pieces, "pieces_off": pieces_off, "gaps": gaps, "gaps_off": gaps_off,
    }


class TokenWidget(anywidget.AnyWidget):
    _esm = asset("tokens.js")
    _css = asset("tokens.css")

    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    starts = traitlets.List(traitlets.Int()).tag(sync=True)  # first token shown, per row (the front end pages)
    window = traitlets.Int(1000).tag(sync=True)
    show_whitespace = traitlets.Bool(False).tag(sync=True)

    @classmethod
    def from_results(cls, results, **kwargs):
        w = cls(rows=[encode_row(r) for r in results], starts=[r.window_start for r in results],
                window=max(1, max(len(r.spans) for r in results)), **kwargs)
        w._results = list(results)
        return w

    def __repr__(self):
        return "\n".join(r.summary() for r in getattr(self, "_results", []))

    @traitlets.observe("starts")
    def _page(self, change):
        results = getattr(self, "_results", None)
        if not results:
            return
        rows = list(self.rows)
        changed = False
        for i, (r, start) in enumerate(zip(results, change["new"])):
            if i < len(rows) and rows[i]["start"] != start:
                spans = r.window(start, self.window)
                start = max(0, min(int(start), max(0, r.n_tokens - 1)))
                rows[i] = encode_row(r, spans, start)
                changed = True
        if changed:
            self.rows = rows
