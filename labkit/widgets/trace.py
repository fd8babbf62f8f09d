"""The agent trace view: a timeline of model turns, tool calls (arguments, observations, errors), tokens and
latency per step, the final answer, expandable raw messages, and Approve/Reject buttons for pending tool calls.

Steps are short texts, sent as a JSON list; the view grows live while the agent runs (``add_step``).
"""
from __future__ import annotations

import time

import anywidget
import traitlets

from . import asset


class TraceWidget(anywidget.AnyWidget):
    _esm = asset("trace.js")
    _css = asset("trace.css")

    task = traitlets.Unicode("").tag(sync=True)
    model_label = traitlets.Unicode("").tag(sync=True)
    tools = traitlets.List(traitlets.Unicode()).tag(sync=True)
    steps = traitlets.List(traitlets.Dict()).tag(sync=True)
    answer = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    stopped = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    summary = traitlets.Unicode("").tag(sync=True)
    running = traitlets.Bool(False).tag(sync=True)
    pending = traitlets.Dict({}).tag(sync=True)  # {"id", "name", "args"} while a call waits for approval
    decision = traitlets.Unicode("").tag(sync=True)  # set by the front end: "approve:<id>" | "reject:<id>"

    @classmethod
    def from_result(cls, result):
        return cls(task=result.task, model_label=result.model, tools=list(result.tools),
                   steps=[s.to_json() for s in result.steps], answer=result.answer, stopped=result.stopped,
                   summary=result.summary().splitlines()[0])

    @classmethod
    def live(cls, task: str, model_label: str, tools: list[str]):
        return cls(task=task, model_label=model_label, tools=list(tools), running=True)

    def add_step(self, step) -> None:
        self.steps = self.steps + [step.to_json()]

    def finish(self, result) -> None:
        self.steps = [s.to_json() for s in result.steps]
        self.answer, self.stopped = result.answer, result.stopped
        self.summary = result.summary().splitlines()[0]
        self.running = False

    def ask_from_thread(self, name: str, args: dict, timeout: float = 300.0) -> bool:
        """Approval for an agent running in a background thread (the kernel stays idle, so the click arrives
        as an ordinary widget message). No answer within ``timeout`` seconds: rejected."""
        import threading

        call_id = f"{len(self.steps)}-{time.monotonic_ns()}"
        done = threading.Event()

        def on_decision(change):
            if str(change["new"]).endswith(call_id):
                done.set()

        self.observe(on_decision, names="decision")
        try:
            self.decision = ""
            self.pending = {"id": call_id, "name": name, "args": {k: str(v) for k, v in args.items()}}
            done.wait(timeout)
        finally:
            self.unobserve(on_decision, names="decision")
            self.pending = {}
        return self.decision == f"approve:{call_id}"

    def __repr__(self):
        return f"TraceWidget({self.summary or self.task})"


# --------------------------------------------------------------------------------------------- result views
def widget(result):
    return TraceWidget.from_result(result)


def live_bundle(result) -> dict:
    """The live trace is already on screen above the cell's value: the value is the summary only."""
    return {"text/plain": result.summary()}


_COLORS = {"model": "#eef2ff", "tool": "#ecfdf5", "note": "#fef3c7"}


def html(r) -> str:
    from html import escape as e

    parts = ["<div style='font-family:system-ui,sans-serif;font-size:13px'>",
             f"<div><b>Task:</b> {e(r.task)}</div><ol style='padding-left:1.5em'>"]
    for s in r.steps:
        bg = "#fee2e2" if s.error else _COLORS.get(s.kind, "#fff")
        parts.append(f"<li style='background:{bg};margin:2px 0;padding:2px 6px;border-radius:4px'>"
                     f"<code>{e(s.line())}</code></li>")
    parts.append("</ol>")
    if r.answer is not None:
        parts.append(f"<div style='border-left:4px solid #16a34a;padding:4px 8px'><b>Answer:</b> {e(r.answer)}</div>")
    else:
        parts.append(f"<div style='border-left:4px solid #d97706;padding:4px 8px'><b>No answer:</b> "
                     f"{e(str(r.stopped))}</div>")
    parts.append(f"<div style='color:#666'>{e(r.summary().splitlines()[0])}</div></div>")
    return "".join(parts)
