"""The generation view: generated tokens coloured by probability; per step the top next-token probabilities
(the model's and after temperature/top-k/top-p) and the logit lens; sliders that re-sample in the kernel."""
from __future__ import annotations

import anywidget
import traitlets

from . import asset, pack_strings, u32


def _f32(values) -> bytes:
    from array import array

    return array("f", [float(v) for v in values]).tobytes()


def encode(result) -> dict:
    """The result as widget state: numbers as binary buffers, labels as packed UTF-8."""
    s = result.settings
    labels, labels_off = pack_strings([t.encode("utf-8", "replace") for t in result.tokens])
    state = dict(
        model_name=result.model, prompt=result.prompt, summary=result.summary(), notes=list(result.notes),
        temperature=float(s.temperature), top_k=int(s.top_k or 0), top_p=float(s.top_p if s.top_p is not None else 1.0),
        seed=int(s.seed or 0), beams=int(s.beams), n_new=len(result.token_ids),
        ids=u32(result.token_ids), labels=labels, labels_off=labels_off,
        kv=({"tokens": result.kv.new_tokens, "with": result.kv.with_cache_s, "without": result.kv.without_cache_s}
            if result.kv else {}),
        has_steps=bool(result.steps), top_n=0, probs=b"", raw=b"", ranks=b"", top_labels=b"", top_labels_off=b"",
        top_raw=b"", top_probs=b"", lens_names=[], lens_k=0, lens_labels=b"", lens_labels_off=b"", lens_probs=b"",
    )
    if result.steps:
        n = len(result.steps[0].top_ids)
        tl, tlo = pack_strings([t.encode("utf-8", "replace") for st in result.steps for t in st.top_tokens])
        state.update(top_n=n, probs=_f32(st.prob for st in result.steps), raw=_f32(st.raw_prob for st in result.steps),
                     ranks=u32(st.rank for st in result.steps), top_labels=tl, top_labels_off=tlo,
                     top_raw=_f32(v for st in result.steps for v in st.top_raw),
                     top_probs=_f32(v for st in result.steps for v in st.top_probs))
    if result.lens:
        k = len(result.lens[0][0].tokens)
        ll, llo = pack_strings([t.encode("utf-8", "replace") for rows in result.lens for r in rows for t in r.tokens])
        state.update(lens_names=[r.layer for r in result.lens[0]], lens_k=k, lens_labels=ll, lens_labels_off=llo,
                     lens_probs=_f32(p for rows in result.lens for r in rows for p in r.probs))
    return state


class GenerateWidget(anywidget.AnyWidget):
    _esm = asset("generate.js")
    _css = asset("generate.css")

    model_name = traitlets.Unicode("").tag(sync=True)
    prompt = traitlets.Unicode("").tag(sync=True)
    summary = traitlets.Unicode("").tag(sync=True)
    notes = traitlets.List(traitlets.Unicode()).tag(sync=True)
    temperature = traitlets.Float(1.0).tag(sync=True)
    top_k = traitlets.Int(0).tag(sync=True)  # 0: off
    top_p = traitlets.Float(1.0).tag(sync=True)
    seed = traitlets.Int(0).tag(sync=True)
    beams = traitlets.Int(1).tag(sync=True)
    n_new = traitlets.Int(0).tag(sync=True)
    ids = traitlets.Bytes(b"").tag(sync=True)
    labels = traitlets.Bytes(b"").tag(sync=True)
    labels_off = traitlets.Bytes(b"").tag(sync=True)
    kv = traitlets.Dict().tag(sync=True)
    has_steps = traitlets.Bool(False).tag(sync=True)
    top_n = traitlets.Int(0).tag(sync=True)
    probs = traitlets.Bytes(b"").tag(sync=True)  # float32 per step: chosen token, under the settings
    raw = traitlets.Bytes(b"").tag(sync=True)  # float32 per step: chosen token, the model's own probability
    ranks = traitlets.Bytes(b"").tag(sync=True)  # uint32 per step
    top_labels = traitlets.Bytes(b"").tag(sync=True)
    top_labels_off = traitlets.Bytes(b"").tag(sync=True)
    top_raw = traitlets.Bytes(b"").tag(sync=True)  # float32 (steps, top_n)
    top_probs = traitlets.Bytes(b"").tag(sync=True)  # float32 (steps, top_n)
    lens_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    lens_k = traitlets.Int(0).tag(sync=True)
    lens_labels = traitlets.Bytes(b"").tag(sync=True)
    lens_labels_off = traitlets.Bytes(b"").tag(sync=True)
    lens_probs = traitlets.Bytes(b"").tag(sync=True)  # float32 (steps, layers, k)
    busy = traitlets.Bool(False).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    version = traitlets.Int(0).tag(sync=True)  # bumped after each re-sample: the front end redraws once

    @classmethod
    def from_result(cls, result):
        w = cls(**encode(result))
        w._result = result
        w._loading = False
        return w

    def load(self, result) -> None:
        self._result = result
        self._loading = True
        try:
            with self.hold_sync():
                for key, value in encode(result).items():
                    setattr(self, key, value)
                self.error = ""
                self.version += 1
        finally:
            self._loading = False

    @traitlets.observe("temperature", "top_k", "top_p", "seed")
    def _resample(self, change):
        """A slider moved in the front end: generate again with the new settings (same prompt and model)."""
        if getattr(self, "_loading", True) or getattr(self, "_result", None) is None:
            return
        regen = getattr(self._result, "_regenerate", None)
        if regen is None:
            return
        from ..errors import LabkitError

        self.busy = True
        try:
            new = regen(temperature=self.temperature, top_k=self.top_k or None,
                        top_p=None if self.top_p >= 1 else self.top_p, seed=self.seed)
            self.load(new)
        except LabkitError as exc:
            self.error = str(exc)
        finally:
            self.busy = False

    @property
    def result(self):
        """The latest result (after any re-sampling from the sliders)."""
        return self._result

    def __repr__(self):
        return f"GenerateWidget({self.summary})"


# --------------------------------------------------------------------------------------------- result views
def widget(result):
    return GenerateWidget.from_result(result)


def html(result) -> str:
    """Generated tokens shaded by how unlikely each was, the summary and the notes (no JavaScript)."""
    from html import escape as esc

    parts = [f"<div class='labkit-generate-static'><div style='white-space:pre-wrap;font-family:monospace'>"
             f"<span style='color:#6b7280'>{esc(result.prompt)}</span>"]
    for k, t in enumerate(result.tokens):
        p = result.steps[k].prob if result.steps else None
        bg = f"background:rgba(37,99,235,{0.15 + 0.6 * (1 - p):.2f});" if p is not None else ""
        title = f" title='p={p:.3f}'" if p is not None else ""
        parts.append(f"<span style='{bg}border-radius:2px'{title}>{esc(t)}</span>")
    parts.append(f"</div><div style='color:#6b7280'>{esc(result.summary())}</div>")
    if result.kv:
        parts.append(f"<div>{esc(repr(result.kv))}</div>")
    parts += [f"<div><i>note: {esc(n)}</i></div>" for n in result.notes]
    parts.append("</div>")
    return "".join(parts)
