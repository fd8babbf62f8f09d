"""Watching a run: the curves, tokens/s, ETA and memory, and stopping cleanly at the next step.

``LiveCallback`` is a ``transformers.TrainerCallback``: it reads the trainer's own logs (``on_log``), keeps the
curves, refreshes the training view, and, when a stop was asked (the view's Stop button, ``StopSignal.set()`` or a
kernel interrupt), tells the trainer to save a checkpoint and stop after the current step.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field

from transformers import TrainerCallback

from ..runtime import process_rss

#: the log key that is the "reward" curve of each method, and how it is labelled
REWARD_KEYS = {"dpo": ("rewards/margins", "reward margin (chosen − rejected)"),
               "grpo": ("reward", "mean reward"),
               "reward": ("accuracy", "pair accuracy")}


@dataclass
class Curve:
    """The curves of one run (steps, loss, reward) as the view draws them."""

    name: str
    method: str
    reward_label: str = ""
    steps: list[int] = field(default_factory=list)
    loss: list[float | None] = field(default_factory=list)
    reward: list[float | None] = field(default_factory=list)

    def summary(self) -> str:
        last = next((v for v in reversed(self.loss) if v is not None), None)
        s = f"{self.name} ({self.method}): {len(self.steps)} steps"
        if last is not None:
            s += f", last loss {last:.4f}"
        r = next((v for v in reversed(self.reward) if v is not None), None)
        if r is not None:
            s += f", last {self.reward_label or 'reward'} {r:.3f}"
        return s


class StopSignal:
    """A flag the Stop button, a kernel interrupt or any code can raise; checked once per step."""

    def __init__(self):
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str = "stop requested") -> None:
        self.reason = self.reason or reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


class interrupt_stops:
    """Context manager: the first Ctrl-C / kernel interrupt asks for a clean stop; a second one interrupts."""

    def __init__(self, stop: StopSignal):
        self.stop = stop
        self.previous = None

    def _handler(self, signum, frame):
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set("interrupted: stopping at the end of this step (interrupt again to abort)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self.previous = signal.signal(signal.SIGINT, self._handler)
            except (ValueError, TypeError):  # not the main interpreter / embedded
                self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _num(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class LiveCallback(TrainerCallback):
    """Collect the trainer's logs into a Curve and a status; refresh the view; honour the stop signal."""

    def __init__(self, curve: Curve, stop: StopSignal, widget=None, on_update=None, min_interval: float = 0.25):
        self.curve, self.stop, self.widget, self.on_update = curve, stop, widget, on_update
        self.min_interval = min_interval
        self.reward_key = REWARD_KEYS.get(curve.method, (None, ""))[0]
        self.t0 = None
        self.step0 = 0
        self.tokens0 = None
        self.tokens = 0.0
        self.peak_memory = process_rss()
        self.status: dict = {"run": curve.name, "state": "starting", "reward_label": curve.reward_label}
        self._last_push = 0.0
        self.stopped_early = False

    # -- trainer events
    def on_train_begin(self, args, state, control, **kw):
        self.t0 = time.perf_counter()
        self.step0 = state.global_step
        self.status.update(state="running", step=state.global_step, max_steps=state.max_steps)
        self._push(force=True)

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "train_runtime" in logs:  # the final summary line
            return
        loss = _num(logs.get("loss"))
        reward = _num(logs.get(self.reward_key)) if self.reward_key else None
        if loss is None and reward is None:
            return
        if self.curve.steps and self.curve.steps[-1] == state.global_step:
            return
        self.curve.steps.append(state.global_step)
        self.curve.loss.append(loss)
        self.curve.reward.append(reward)
        ntok = _num(logs.get("num_tokens"))
        if ntok is not None:
            if self.tokens0 is None:  # tokens of the steps before this log (a resumed run counts from here)
                self.tokens0 = ntok - ntok / max(1, state.global_step - self.step0) if state.global_step > self.step0 else 0
            self.tokens = ntok - self.tokens0
        self._update(state, loss, reward)

    def on_step_end(self, args, state, control, **kw):
        if self.widget is not None and getattr(self.widget, "stop_requested", False) and not self.stop.is_set():
            self.stop.set("stopped from the training view")
        if self.stop.is_set():
            control.should_training_stop = True
            control.should_save = True
            self.stopped_early = True
        return control

    def on_train_end(self, args, state, control, **kw):
        self.status.update(step=state.global_step)
        self.finish("stopped" if self.stopped_early else "done", self.stop.reason if self.stopped_early else "")

    # -- helpers
    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0 if self.t0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed if self.elapsed > 0 else 0.0

    def _update(self, state, loss, reward):
        rss = process_rss()
        self.peak_memory = max(self.peak_memory, rss)
        done = state.global_step - self.step0
        eta = (state.max_steps - state.global_step) * (self.elapsed / done) if done > 0 and state.max_steps else None
        self.status.update(step=state.global_step, max_steps=state.max_steps, loss=loss, reward=reward,
                           tokens_per_s=self.tokens_per_s, eta_s=eta, elapsed_s=self.elapsed, memory=rss)
        self._push()

    def finish(self, state_name: str, message: str = "") -> None:
        self.status.update(state=state_name, message=message, elapsed_s=self.elapsed, eta_s=0)
        self._push(force=True)

    def _push(self, force: bool = False):
        now = time.perf_counter()
        if not force and now - self._last_push < self.min_interval:
            return
        self._last_push = now
        if self.widget is not None:
            try:
                self.widget.refresh(self.status)
            except Exception:  # noqa: BLE001 - a closed front end must not break training
                self.widget = None
        if self.on_update is not None:
            self.on_update(self.curve, dict(self.status))
