"""What an agent run leaves behind: a list of steps (model turns, tool calls, notes) and the final answer."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ..viewable import Viewable


@dataclass
class Step:
    """One step of the timeline.

    ``kind``: ``model`` (a model turn: ``text`` and/or ``calls``), ``tool`` (one tool call: ``name``, ``args``,
    ``observation``, ``error``, ``approved``) or ``note`` (the loop speaking: step limit, exception, rejection).
    """

    kind: str
    text: str = ""
    calls: list[dict] = field(default_factory=list)
    name: str = ""
    args: dict = field(default_factory=dict)
    observation: str = ""
    error: bool = False
    approved: bool | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    raw: dict = field(default_factory=dict)
    agent: str = ""

    def line(self) -> str:
        who = f"[{self.agent}] " if self.agent else ""
        if self.kind == "model":
            what = "; ".join(f"call {c['name']}({_args(c.get('args', {}))})" for c in self.calls) or repr(self.text)
            return f"{who}model  {what}   ({self.tokens_in}→{self.tokens_out} tokens, {self.seconds * 1000:.0f} ms)"
        if self.kind == "tool":
            flag = " ✗" if self.error else ""
            gate = "" if self.approved is None else (" [approved]" if self.approved else " [rejected]")
            obs = self.observation if len(self.observation) < 160 else self.observation[:157] + "..."
            return f"{who}tool   {self.name}({_args(self.args)}){gate} → {obs!r}{flag}   ({self.seconds * 1000:.0f} ms)"
        return f"{who}note   {self.text}"

    def to_json(self) -> dict:
        d = asdict(self)
        d["raw"] = {k: (v if isinstance(v, (str, int, float, bool, type(None))) else json.dumps(v, default=str))
                    for k, v in self.raw.items()}
        return d


def _args(args: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in (args or {}).items())


@dataclass
class AgentResult(Viewable):
    """One agent run: the task, every step, the final answer (``None`` when it stopped before one)."""

    task: str
    model: str
    tools: list[str]
    steps: list[Step]
    answer: str | None
    stopped: str | None = None  # why the run ended without an answer (step limit, error)
    seconds: float = 0.0
    max_steps: int = 0
    messages: list = field(default_factory=list, repr=False)

    # -- numbers -------------------------------------------------------------------------------------------
    @property
    def model_steps(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "model"]

    @property
    def tool_steps(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "tool"]

    @property
    def n_model_calls(self) -> int:
        return len(self.model_steps)

    @property
    def n_tool_calls(self) -> int:
        return len(self.tool_steps)

    @property
    def tool_names_called(self) -> list[str]:
        return [s.name for s in self.tool_steps]

    @property
    def tokens(self) -> int:
        return sum(s.tokens_in + s.tokens_out for s in self.model_steps)

    @property
    def errors(self) -> list[Step]:
        return [s for s in self.tool_steps if s.error]

    @property
    def ok(self) -> bool:
        return self.answer is not None and self.stopped is None

    def summary(self) -> str:
        head = (f"agent ({self.model}; tools: {', '.join(self.tools) or 'none'}): {self.n_model_calls} model calls, "
                f"{self.n_tool_calls} tool calls, {self.tokens} tokens, {self.seconds:.2f} s")
        if self.answer is not None:
            return head + f"\nanswer: {self.answer}"
        return head + f"\nno answer: {self.stopped}"

    def table(self) -> list[dict]:
        return [s.to_json() for s in self.steps]

    # -- views ---------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        lines = [f"task: {self.task}"] + [f"{i + 1:>2}. {s.line()}" for i, s in enumerate(self.steps)]
        return "\n".join(lines + [self.summary()])

    def _repr_html_(self) -> str:
        return self.html()
