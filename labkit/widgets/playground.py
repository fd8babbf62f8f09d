"""The training playground: pick a dataset, a network and an optimiser, press Train, and watch the decision
boundary and the loss curves move while the kernel trains.

``PlaygroundWidget`` trains with ``labkit.playground.train`` in a background thread, so the kernel stays free:
widget messages (Stop, a changed setting) are handled while it trains, and other cells can run. Progress reaches
the browser as binary buffers (float32 curves and boundary grid, uint8 labels), at most about ten times a second.
Train and Stop are messages from the ES module (``widgets/playground.js``); from Python, ``w.train()``,
``w.stop()`` and ``w.wait()`` do the same, so a script or a test drives it without a click.

A ``TrainResult`` shows itself as this widget, loaded with that run (its settings in the controls): press Train
to run it again with whatever you changed.
"""
from __future__ import annotations

import threading
import time
from array import array

import anywidget
import traitlets

from .. import playground as engine
from ..errors import LabkitUsageError
from . import asset

#: what the controls offer (a result's own value is added to its list when it is not there)
CHOICES = {
    "dataset": list(engine.DATASETS),
    "noise": [0.0, 0.05, 0.1, 0.2, 0.3],
    "depth": [1, 2, 3, 4, 6, 8],
    "width": [2, 4, 8, 16, 32, 64, 128],
    "activation": list(engine.ACTIVATIONS),
    "norm": list(engine.NORMS),
    "dropout": [0.0, 0.1, 0.2, 0.3, 0.5],
    "optimizer": list(engine.OPTIMIZERS),
    "lr": [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0],
    "weight_decay": [0.0, 0.0001, 0.001, 0.01, 0.1],
    "steps": [100, 300, 1000, 3000, 10000],
}
MAX_CURVE = 2000  # points of the training-loss curve sent to the browser (longer runs are thinned)


def f32(values) -> bytes:
    return array("f", [float(v) for v in values]).tobytes()


def _thin(values: list) -> tuple[list, list]:
    """(steps, values): every value, or about MAX_CURVE of them spread evenly over the run (the last kept)."""
    n = len(values)
    if n <= MAX_CURVE:
        return list(range(1, n + 1)), list(values)
    stride = -(-n // MAX_CURVE)
    idx = list(range(stride - 1, n, stride))
    if idx[-1] != n - 1:
        idx.append(n - 1)
    return [i + 1 for i in idx], [values[i] for i in idx]


class PlaygroundWidget(anywidget.AnyWidget):
    _esm = asset("playground.js")
    _css = asset("playground.css")

    settings = traitlets.Dict().tag(sync=True)  # the run's settings (labkit.playground.Settings as a dict)
    choices = traitlets.Dict().tag(sync=True)
    status = traitlets.Dict().tag(sync=True)  # state, step, steps, loss, test_loss, accuracies, elapsed_s, message
    loss_steps = traitlets.Bytes(b"").tag(sync=True)  # float32
    loss = traitlets.Bytes(b"").tag(sync=True)  # float32
    test_steps = traitlets.Bytes(b"").tag(sync=True)  # float32
    test_loss = traitlets.Bytes(b"").tag(sync=True)  # float32
    grid = traitlets.Bytes(b"").tag(sync=True)  # float32, grid_n x grid_n, P(class 1), row 0 = lowest y
    grid_n = traitlets.Int(0).tag(sync=True)
    extent = traitlets.List([-1.0, 1.0, -1.0, 1.0]).tag(sync=True)
    points = traitlets.Bytes(b"").tag(sync=True)  # float32 x, y, x, y, ... (training points)
    labels = traitlets.Bytes(b"").tag(sync=True)  # uint8 class of each point
    runs = traitlets.Int(0).tag(sync=True)  # runs trained by this widget

    def __init__(self, result: "engine.TrainResult | None" = None, **settings):
        s = result.settings if result is not None else engine.settings(None, **settings)
        choices = {k: list(v) for k, v in CHOICES.items()}
        for key, options in choices.items():
            value = getattr(s, key)
            if value not in options:
                options.append(value)
                if not isinstance(value, str):
                    options.sort()
        super().__init__(settings=s.as_dict(), choices=choices)
        self.result = result
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_push = 0.0
        self.on_msg(self._on_msg)
        self.observe(self._on_settings, names="settings")
        if result is not None:
            self._push(result, result.state, "")
        else:
            self._show_data(s)
            self.status = {"state": "ready", "step": 0, "steps": s.steps, "message": "press Train"}

    # ------------------------------------------------------------------------------------------ driving it
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def train(self, settings: dict | None = None, **changes) -> "PlaygroundWidget":
        """Train with the controls' settings (or ``settings``, a dict), with ``changes``, in a background thread;
        returns at once."""
        if self.running:
            return self
        try:
            s = engine.settings(dict(self.settings if settings is None else settings), **changes)
        except LabkitUsageError as exc:
            self.status = {**self.status, "state": "error", "message": str(exc)}
            return self
        if s.as_dict() != self.settings:
            self.settings = s.as_dict()
        self._stop = threading.Event()
        self.status = {"state": "starting", "step": 0, "steps": s.steps, "message": ""}
        self._thread = threading.Thread(target=self._run, args=(s, self._stop), daemon=True,
                                        name="labkit-playground")
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the run at the next step."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> "engine.TrainResult | None":
        """Wait for the run in progress (if any) to end; the latest result."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result

    def _run(self, s, stop) -> None:
        try:
            self.result = engine.train(s, on_progress=self._progress, stop=stop, report_every=5)
            self.runs += 1
        except Exception as exc:  # noqa: BLE001 - the view says what went wrong; the kernel carries on
            self.status = {**self.status, "state": "error", "message": f"{type(exc).__name__}: {exc}"}

    def _progress(self, p) -> None:
        now = time.monotonic()
        if p.state == "running" and now - self._last_push < 0.1:
            return
        self._last_push = now
        self._push(p.item, p.state, p.message)

    def _on_msg(self, _widget, content, _buffers) -> None:
        cmd = (content or {}).get("cmd")
        if cmd == "train":  # the browser sends the settings it shows with the command
            settings = (content or {}).get("settings")
            self.train(settings if isinstance(settings, dict) else None)
        elif cmd == "stop":
            self.stop()

    def _on_settings(self, change) -> None:
        old, new = change["old"] or {}, change["new"] or {}
        if not self.running and any(old.get(k) != new.get(k) for k in ("dataset", "noise", "n", "seed")):
            try:
                self._show_data(engine.settings(dict(new)))
            except LabkitUsageError:
                pass

    # ------------------------------------------------------------------------------------------ drawing
    def _show_data(self, s) -> None:
        X, y = engine.dataset(s.dataset, s.n, s.noise, s.seed)
        pad = 0.3
        with self.hold_sync():
            self.points = X.astype("float32").tobytes()
            self.labels = y.astype("uint8").tobytes()
            self.extent = [float(X[:, 0].min() - pad), float(X[:, 0].max() + pad),
                           float(X[:, 1].min() - pad), float(X[:, 1].max() + pad)]
            self.grid, self.grid_n = b"", 0
            self.loss_steps = self.loss = self.test_steps = self.test_loss = b""

    def _push(self, r, state: str, message: str) -> None:
        steps, loss = _thin(r.loss)
        with self.hold_sync():
            self.loss_steps, self.loss = f32(steps), f32(loss)
            self.test_steps, self.test_loss = f32(r.test_steps), f32(r.test_loss)
            if r.grid is not None:
                self.grid, self.grid_n = r.grid.astype("float32").tobytes(), int(r.grid.shape[0])
            self.extent = [float(v) for v in r.extent]
            self.points = r.X.astype("float32").tobytes()
            self.labels = r.y.astype("uint8").tobytes()
            self.status = {
                "state": "diverged" if r.diverged else state, "step": r.step, "steps": r.settings.steps,
                "loss": r.loss[-1] if r.loss else None,
                "test_loss": r.test_loss[-1] if r.test_loss else None,
                "train_accuracy": r.train_accuracy, "test_accuracy": r.test_accuracy,
                "elapsed_s": r.seconds, "message": message}

    def __repr__(self):
        return repr(self.result) if self.result is not None else "<training playground: press Train>"


def playground(**settings) -> PlaygroundWidget:
    """A new playground with these settings (``labkit.playground.Settings``'s names); press Train."""
    return PlaygroundWidget(None, **settings)


# --------------------------------------------------------------------------------------------- result views
def widget(result):
    return PlaygroundWidget(result)


def _png(rgb: bytes, w: int, h: int) -> bytes:
    import struct
    import zlib

    raw = b"".join(b"\x00" + rgb[y * w * 3:(y + 1) * w * 3] for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def boundary_png(result, scale: int = 4) -> bytes:
    """The decision boundary (blue: class 0, orange: class 1) with the training points, as a PNG."""
    import numpy as np

    p = np.clip(np.nan_to_num(result.grid, nan=0.5), 0, 1)[::-1]  # top row = highest y
    c0, c1, white = np.array([147, 197, 253]), np.array([253, 186, 116]), np.array([255, 255, 255])
    t = np.abs(p - 0.5)[..., None] * 2
    rgb = np.where(p[..., None] < 0.5, white + (c0 - white) * t, white + (c1 - white) * t)
    img = np.kron(rgb, np.ones((scale, scale, 1)))
    h, w = img.shape[:2]
    x0, x1, y0, y1 = result.extent
    for (x, y), label in zip(result.X, result.y):
        px, py = int((x - x0) / (x1 - x0) * (w - 1)), int((y1 - y) / (y1 - y0) * (h - 1))
        img[max(0, py - 1):py + 2, max(0, px - 1):px + 2] = (29, 78, 216) if label == 0 else (194, 65, 12)
    return _png(img.astype("uint8").tobytes(), w, h)


def html(result) -> str:
    import base64
    import html as _html

    parts = [f"<pre style='font-size:12px'>{_html.escape(result.summary())}</pre>"]
    if result.grid is not None:
        parts.append("<img alt='decision boundary' src='data:image/png;base64,"
                     + base64.b64encode(boundary_png(result)).decode() + "'/>")
    return "".join(parts)
