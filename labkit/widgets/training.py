"""The live training view: loss and reward curves, tokens/s, ETA, memory, a Stop button, runs overlaid.

Curves travel as little-endian float32 buffers (``steps``, ``loss``, ``reward`` per run); the ES module
(``widgets/training.js``) draws them on a canvas. ``stop_requested`` is set by the Stop button; the trainer
callback reads it and ends the run at the next step (with a checkpoint).
"""
from __future__ import annotations

from array import array

import anywidget
import traitlets

from . import asset

COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"]


def f32(values) -> bytes:
    """Float32 little-endian buffer (what a JS Float32Array reads)."""
    a = array("f", [float("nan") if v is None else float(v) for v in values])
    return a.tobytes()


def encode_run(curve, color: str, current: bool) -> dict:
    return {
        "name": curve.name, "method": curve.method, "color": color, "current": current,
        "reward_label": curve.reward_label, "n": len(curve.steps),
        "steps": f32(curve.steps), "loss": f32(curve.loss), "reward": f32(curve.reward),
    }


def current_kernel_id() -> str:
    """The Jupyter kernel id of this process ('' outside a kernel), from its connection file name."""
    try:
        import os
        import re

        from ipykernel import get_connection_file

        m = re.match(r"kernel-(.+)\.json$", os.path.basename(get_connection_file()))
        return m.group(1) if m else ""
    except Exception:  # noqa: BLE001 - not in a kernel
        return ""


class TrainingWidget(anywidget.AnyWidget):
    _esm = asset("training.js")
    _css = asset("training.css")

    runs = traitlets.List(traitlets.Dict()).tag(sync=True)
    status = traitlets.Dict().tag(sync=True)
    stop_requested = traitlets.Bool(False).tag(sync=True)
    kernel_id = traitlets.Unicode("").tag(sync=True)  # lets the Stop button interrupt a busy kernel (see the JS)

    def __init__(self, curves=(), **kwargs):
        kwargs.setdefault("kernel_id", current_kernel_id())
        super().__init__(**kwargs)
        self._curves = list(curves)
        self.refresh()

    def refresh(self, status: dict | None = None) -> None:
        runs = [encode_run(c, COLORS[i % len(COLORS)], i == len(self._curves) - 1) for i, c in enumerate(self._curves)]
        with self.hold_sync():
            self.runs = runs
            if status is not None:
                self.status = dict(status)

    def __repr__(self):
        if not self._curves:
            return "<training view: no runs>"
        return "\n".join(c.summary() for c in self._curves)


# --------------------------------------------------------------------------------------------- result views
def status_of(result) -> dict:
    """A finished run's status line, as the live view showed it at the end."""
    return {"run": result.name, "state": "stopped" if result.stopped else "done",
            "step": result.step, "max_steps": result.max_steps, "tokens_per_s": result.tokens_per_s,
            "elapsed_s": result.seconds, "memory": result.peak_memory,
            "reward_label": result.curve.reward_label, "message": result.stop_reason,
            "loss": result.losses[-1] if result.losses else None,
            "reward": result.rewards[-1] if result.rewards else None}


def widget(result):
    w = TrainingWidget([result.curve])
    w.refresh(status_of(result))
    return w


def html(result) -> str:
    import html as _html

    return "<pre style='font-size:12px'>" + _html.escape(result.summary()) + "</pre>" + svg(result.curve)


def live_bundle(result) -> dict:
    """The live view is already on screen above: the cell's value is the summary and the static curve."""
    return {"text/plain": repr(result), "text/html": html(result)}


class LiveView:
    """The progress callback that ``%%finetune`` passes to ``labkit.finetune.finetune(on_progress=...)``: the run's
    curves drawn live over up to five earlier runs of the session; the Stop button ends the run (with a checkpoint)
    through ``stop``, the run's ``StopSignal``."""

    def __init__(self, earlier=(), stop=None):
        self.widget = TrainingWidget(list(earlier))
        self.stop = stop
        self.widget.observe(self._stop_clicked, names="stop_requested")

    def _stop_clicked(self, change) -> None:
        if change["new"] and self.stop is not None and not self.stop.is_set():
            self.stop.set("stopped from the training view")

    def display(self) -> "LiveView":
        from . import display

        display(self.widget)
        return self

    def __call__(self, progress) -> None:
        curve = progress.item
        if curve is not None and not any(c is curve for c in self.widget._curves):
            self.widget._curves.append(curve)
        self.widget.refresh(progress.info)
        if self.widget.stop_requested:
            self._stop_clicked({"new": True})


def svg(curve: Curve, w: int = 360, h: int = 110) -> str:
    """A small static loss curve (what nbconvert and plain front ends show instead of the live view)."""
    pts = [(s, l) for s, l in zip(curve.steps, curve.loss) if l is not None]
    if len(pts) < 2:
        return ""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    y1 = y1 if y1 > y0 else y0 + 1
    path = " ".join(f"{'M' if i == 0 else 'L'}{5 + (x - x0) / max(1, x1 - x0) * (w - 10):.1f},"
                    f"{5 + (1 - (y - y0) / (y1 - y0)) * (h - 20):.1f}" for i, (x, y) in enumerate(pts))
    return (f"<svg width='{w}' height='{h}' style='border:1px solid #e5e7eb'><path d='{path}' fill='none' "
            f"stroke='#2563eb' stroke-width='1.5'/><text x='5' y='{h - 4}' font-size='10' fill='#6b7280'>loss "
            f"{ys[0]:.3f} → {ys[-1]:.3f} over {x1} steps</text></svg>")


