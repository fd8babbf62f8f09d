"""The attention view: head view (lines, hover to isolate), model view (layer × head thumbnails), matrix view.

Data goes over as binary buffers: attention as float16 (all layers when small, else one layer at a time, sent
when the front end asks for it by setting ``layer``), thumbnails as uint8 images of at most 32×32.
"""
from __future__ import annotations

import anywidget
import traitlets

from . import asset, pack_strings


def thumbnails(attentions, size: int):
    """(L, H, n, n) attention -> (L, H, s, s) uint8 block means, each scaled to its own maximum."""
    import numpy as np
    import torch

    n = attentions.shape[-1]
    s = max(1, min(size, n))
    a = torch.from_numpy(np.ascontiguousarray(attentions)).float()  # (L, H, n, n)
    L, H = a.shape[:2]
    # block means over an s × s grid (adaptive pooling handles n not divisible by s)
    a = torch.nn.functional.adaptive_avg_pool2d(a.reshape(L * H, 1, n, n), s).reshape(L, H, s, s)
    peak = a.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    return (a / peak * 255).round().to(torch.uint8).numpy(), s


class AttentionWidget(anywidget.AnyWidget):
    _esm = asset("attention.js")
    _css = asset("attention.css")

    model_name = traitlets.Unicode("").tag(sync=True)
    tokens = traitlets.Bytes(b"").tag(sync=True)  # UTF-8 token labels, concatenated
    tokens_off = traitlets.Bytes(b"").tag(sync=True)  # Uint32 offsets (n + 1)
    n_tokens = traitlets.Int(0).tag(sync=True)
    n_layers = traitlets.Int(0).tag(sync=True)
    n_heads = traitlets.Int(0).tag(sync=True)
    causal = traitlets.Bool(False).tag(sync=True)
    pair_start = traitlets.Int(-1).tag(sync=True)
    notes = traitlets.List(traitlets.Unicode()).tag(sync=True)
    view = traitlets.Unicode("head").tag(sync=True)
    layer = traitlets.Int(0).tag(sync=True)
    head = traitlets.Int(-1).tag(sync=True)  # -1: all heads
    all_layers = traitlets.Bool(True).tag(sync=True)  # data holds every layer
    data = traitlets.Bytes(b"").tag(sync=True)  # float16: (L, H, n, n) or (H, n, n) of data_layer
    data_layer = traitlets.Int(-1).tag(sync=True)  # the layer in data (-1: all, -2: none yet)
    thumbs = traitlets.Bytes(b"").tag(sync=True)  # uint8 (L, H, s, s)
    thumb = traitlets.Int(0).tag(sync=True)

    @classmethod
    def from_result(cls, result, view: str = "head", limit: int | None = None, thumb: int | None = None):
        from ..attend import ALL_LAYERS_LIMIT, THUMB

        att = result.attentions
        limit = ALL_LAYERS_LIMIT if limit is None else limit
        labels, offsets = pack_strings([t.encode("utf-8", "replace") for t in result.tokens])
        small = att.size * 2 <= limit
        thumbs, s = thumbnails(att, thumb or THUMB)
        view = view if view in ("head", "model", "matrix") else "head"
        if small:
            data, data_layer = att.astype("<f2").tobytes(), -1
        elif view == "model":  # the model view needs only thumbnails until a head is opened
            data, data_layer = b"", -2
        else:
            data, data_layer = att[result.layer].astype("<f2").tobytes(), result.layer
        w = cls(model_name=result.model, tokens=labels, tokens_off=offsets, n_tokens=result.n_tokens,
                n_layers=result.n_layers, n_heads=result.n_heads, causal=result.causal,
                pair_start=-1 if result.pair_start is None else result.pair_start, notes=list(result.notes),
                view=view, layer=result.layer, head=-1 if result.head is None else result.head,
                all_layers=small, data=data, data_layer=data_layer, thumbs=thumbs.tobytes(), thumb=s)
        w._attentions = att
        return w

    @traitlets.observe("layer")
    def _send_layer(self, change):
        """The front end asked for another layer: send that layer's heads (float16)."""
        att = getattr(self, "_attentions", None)
        if att is None or self.all_layers:
            return
        layer = int(change["new"])
        if 0 <= layer < att.shape[0] and self.data_layer != layer:
            with self.hold_sync():  # data and its layer number arrive in one message
                self.data = att[layer].astype("<f2").tobytes()
                self.data_layer = layer

    def __repr__(self):
        return (f"AttentionWidget({self.model_name}: {self.n_tokens} tokens, {self.n_layers} layers × "
                f"{self.n_heads} heads, view={self.view})")


# --------------------------------------------------------------------------------------------- result views
def widget(result, view: str | None = None):
    return AttentionWidget.from_result(result, view=view or result.view)


def update(w, view: str | None = None) -> None:
    if view:
        w.view = view


def show(result, view: str | None = None) -> None:
    from . import display, widget as view_of

    if view == "bertviz":
        from ..attend import bertviz_view

        display(bertviz_view(result))
    else:
        display(view_of(result, view=view))


def html(result) -> str:
    """A static heatmap table (no JavaScript): what nbconvert, CI logs and plain viewers show."""
    import html as _html

    w = result.weights()
    n = min(result.n_tokens, 40)
    esc = _html.escape
    parts = [f"<div class='labkit-attend-static'><div><b>{esc(result.summary())}</b></div>",
             "<table style='border-collapse:collapse;font:11px monospace'><tr><td></td>"]
    parts += [f"<td style='writing-mode:vertical-rl;padding:1px'>{esc(t)}</td>" for t in result.tokens[:n]]
    parts.append("</tr>")
    for i in range(n):
        parts.append(f"<tr><td style='text-align:right;padding-right:4px'>{esc(result.tokens[i])}</td>")
        for j in range(n):
            masked = result.causal and j > i
            bg = "#e5e7eb" if masked else f"rgba(37,99,235,{float(w[i, j]):.3f})"
            parts.append(f"<td title='{esc(result.tokens[i])} → {esc(result.tokens[j])}: {float(w[i, j]):.3f}' "
                         f"style='width:12px;height:12px;background:{bg}'></td>")
        parts.append("</tr>")
    parts.append("</table>")
    if result.n_tokens > n:
        parts.append(f"<div><i>first {n} of {result.n_tokens} tokens shown</i></div>")
    parts += [f"<div><i>note: {esc(x)}</i></div>" for x in result.notes]
    parts.append("</div>")
    return "".join(parts)
