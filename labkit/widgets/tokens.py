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


# --------------------------------------------------------------------------------------------- result views
def _rows(result) -> list:
    """The TokenizeResults a result shows: itself, a comparison's results, or a trained tokenizer's sample."""
    if hasattr(result, "results"):
        return list(result.results)
    if hasattr(result, "sample"):
        return [result.sample]
    return [result]


def widget(result, **kwargs):
    if hasattr(result, "sample"):  # a trained tokenizer: the view of its sample (one view, shared)
        from . import widget as view_of

        return view_of(result.sample)
    return TokenWidget.from_results(_rows(result), **kwargs)


_PALETTE = ["#fde68a", "#bfdbfe", "#bbf7d0", "#fecaca", "#ddd6fe", "#fed7aa", "#a5f3fc", "#f5d0fe"]


def html_rows(results, limit: int = 400) -> str:
    import html

    parts = ['<div class="labkit-tokens-static" style="font-family:monospace">']
    for r in results:
        parts.append(f"<div><b>{html.escape(r.tokenizer)}</b> — {r.n_tokens:,} tokens · {r.n_chars:,} characters · "
                     f"{r.chars_per_token:.2f} chars/token</div><div style='white-space:pre-wrap;line-height:1.8'>")
        for k, s in enumerate(r.spans[:limit]):
            idx = r.window_start + k
            if s.gap:
                parts.append(html.escape(s.gap))
            title = f"#{idx} id {s.id} bytes {s.data.hex(' ')}"
            parts.append(f"<span title='{title}' style='background:{_PALETTE[idx % len(_PALETTE)]};"
                         f"border-radius:3px;padding:0 1px'>{html.escape(s.text)}</span>")
        if r.n_tokens > min(limit, len(r.spans)):
            parts.append(f" <i>… {r.n_tokens - min(limit, len(r.spans)):,} more tokens</i>")
        parts.append("</div>")
        for note in r.notes:
            parts.append(f"<div><i>note: {html.escape(note)}</i></div>")
    parts.append("</div>")
    return "".join(parts)


def html(result) -> str:
    body = html_rows(_rows(result))
    if not hasattr(result, "sample"):
        return body
    import html as _html

    r = result  # a trained tokenizer: what it learned, then its sample
    rows = (r.merges[:40] and [f"{i + 1}. {a!r} + {b!r} → {a + b!r}" for i, (a, b) in enumerate(r.merges[:40])]
            or [f"{p!r}  {s:.3f}" for p, s in r.vocab[:40]])
    head = (f"<div><b>{_html.escape(r.name)}</b>: {r.algorithm}, vocabulary {r.vocab_size:,}. "
            f"{'Merges in the order they were learned' if r.merges else 'Learned entries'}:</div>"
            f"<pre style='max-height:12em;overflow:auto'>{_html.escape(chr(10).join(rows))}</pre>")
    return head + body
