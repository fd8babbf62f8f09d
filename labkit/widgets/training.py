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
