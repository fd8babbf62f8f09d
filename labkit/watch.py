"""One way to watch long work: every engine that runs for a while calls ``on_progress(Progress(...))``.

``finetune`` (``kind="train"``, one update per logged step), ``generate`` (``"token"``, as text arrives),
``agent.run`` (``"step"``, one per model turn or tool call) and ``rag.Index.add`` (``"index"``, per batch of
chunks) all take ``on_progress=``. A magic passes its view's callback in (``labkit.widgets``); a script can pass
anything that takes one argument, e.g. a tqdm bar::

    >>> from labkit.watch import tqdm_progress
    >>> labkit.finetune.finetune("tiny-chat", rows, steps=40, on_progress=tqdm_progress())

An error raised by a callback never stops the work: it is reported once as a warning and the callback is dropped
(a closed front end must not break a training run).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

KINDS = ("train", "token", "step", "index")
STATES = ("starting", "running", "done", "stopped", "error")


@dataclass
class Progress:
    """One report from long work: how far it is, and the engine's own record of what just happened."""

    kind: str  # 'train' | 'token' | 'step' | 'index'
    done: int  # units done so far: optimizer steps, new tokens, agent steps, chunks embedded
    total: int | None = None  # units in all, when known
    state: str = "running"  # 'starting' | 'running' | 'done' | 'stopped' | 'error'
    message: str = ""
    item: Any = None  # the engine's record: the training Curve, the new text, the agent Step, the document id
    info: dict = field(default_factory=dict)  # figures of the moment: loss, tokens/s, ETA, memory, ...

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None


OnProgress = Callable[[Progress], None]


class Reporter:
    """What an engine holds: ``reporter(progress)`` calls the callback, and drops it after its first error."""

    def __init__(self, callback: Optional[OnProgress]):
        if callback is not None and not callable(callback):
            raise TypeError(f"on_progress must be a function taking one Progress, not {type(callback).__name__}")
        self.callback = callback

    def __bool__(self) -> bool:
        return self.callback is not None

    def __call__(self, progress: Progress) -> None:
        if self.callback is None:
            return
        try:
            self.callback(progress)
        except Exception as exc:  # noqa: BLE001 - watching must never break the work
            warnings.warn(f"on_progress callback failed ({type(exc).__name__}: {exc}); it is not called again",
                          RuntimeWarning, stacklevel=2)
            self.callback = None


def tqdm_progress(**kwargs) -> OnProgress:
    """A progress callback drawing a tqdm bar (``pip install tqdm``; it comes with transformers)."""
    from tqdm.auto import tqdm

    bar = None

    def on_progress(p: Progress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=p.total, desc=p.kind, **kwargs)
        if p.total is not None and bar.total != p.total:
            bar.total = p.total
        bar.n = p.done
        if p.info.get("loss") is not None:
            bar.set_postfix(loss=f"{p.info['loss']:.4f}", refresh=False)
        bar.refresh()
        if p.state in ("done", "stopped", "error"):
            bar.close()

    return on_progress
