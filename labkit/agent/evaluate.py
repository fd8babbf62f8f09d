"""Score an agent on held-out arithmetic and lookup tasks, with tools and without them, side by side.

The tasks come from the zoo corpus's ``test`` split (``Corpus.multiplication('test')``, ``Corpus.lookups('test')``):
items whose key hashes into the held-out 5 %, never used to train tiny-chat. A task succeeds when the final answer
contains the expected value as a whole word (numbers with thousands separators are accepted).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from ..errors import LabkitUsageError


def eval_tasks(n: int = 120, seed: int = 0, kinds=("arithmetic", "lookup")) -> list[dict]:
    """``n`` held-out tasks, split evenly between ``kinds``: dicts with kind, question, answer, tool."""
    from ..zoo.corpus import Corpus

    if n < 1:
        raise LabkitUsageError("the number of eval tasks must be at least 1")
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in ("arithmetic", "lookup")]
    if unknown:
        raise LabkitUsageError(f"unknown task kind(s) {unknown}; use arithmetic and/or lookup")
    c = Corpus(seed=seed)
    counts = [n // len(kinds) + (1 if i < n % len(kinds) else 0) for i in range(len(kinds))]
    groups = []
    for kind, k in zip(kinds, counts):
        tasks = []
        groups.append(tasks)
        if kind == "arithmetic":
            for it in c.multiplication("test", k, stream="agent-eval-mul"):
                tasks.append({"kind": kind, "question": it["question"], "answer": it["answer"], "tool": "calculator",
                              "expression": it["expression"], "key": f"mul:{min(it['a'], it['b'])}*{max(it['a'], it['b'])}"})
        else:
            for it in c.lookups("test", k, stream="agent-eval-lookup"):
                tasks.append({"kind": kind, "question": it["question"], "answer": it["answer"], "tool": "lookup",
                              "entity": it["entity"], "key": f"lookup:{it['entity']}|{it['attr']}"})
    # interleaved (a partial run, and any prefix such as eval_tasks(120)[:10], covers every kind)
    out = []
    for i in range(max(counts)):
        out.extend(g[i] for g in groups if i < len(g))
    return out


def is_correct(answer: str | None, expected: str) -> bool:
    """The expected value appears in the answer as a whole word (case-insensitive; 29,842 counts as 29842)."""
    if not answer:
        return False
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", answer)
    return re.search(r"(?<![\w-])" + re.escape(expected.strip()) + r"(?![\w])", text, re.I) is not None


@dataclass
class EvalResult:
    model: str
    rows: list[dict]
    seconds: float
    with_tools: bool = True
    without_tools: bool = True
    _extra: dict = field(default_factory=dict, repr=False)

    def accuracy(self, mode: str = "tools", kind: str | None = None) -> float:
        key = "ok_tools" if mode == "tools" else "ok_direct"
        rows = [r for r in self.rows if (kind is None or r["kind"] == kind) and key in r]
        return sum(r[key] for r in rows) / len(rows) if rows else float("nan")

    def table(self) -> list[dict]:
        kinds = sorted({r["kind"] for r in self.rows})
        out = []
        for kind in kinds + [None]:
            n = sum(1 for r in self.rows if kind is None or r["kind"] == kind)
            row = {"tasks": kind or "all", "n": n}
            if self.with_tools:
                row["with tools"] = round(self.accuracy("tools", kind), 4)
            if self.without_tools:
                row["without tools"] = round(self.accuracy("direct", kind), 4)
            out.append(row)
        return out

    def __repr__(self):
        lines = [f"agent eval: {self.model}, {len(self.rows)} held-out tasks, {self.seconds:.0f} s"]
        cols = ["tasks", "n"] + (["with tools"] if self.with_tools else []) + (["without tools"] if self.without_tools else [])
        lines.append("  ".join(f"{c:>13s}" for c in cols))
        for row in self.table():
            lines.append("  ".join(f"{row[c]:>13.1%}" if isinstance(row[c], float) else f"{str(row[c]):>13s}"
                                   for c in cols))
        return "\n".join(lines)

    def failures(self, mode: str = "tools", limit: int = 10) -> list[dict]:
        key = "ok_tools" if mode == "tools" else "ok_direct"
        return [r for r in self.rows if not r.get(key, True)][:limit]

    def to_json(self) -> dict:
        return {"model": self.model, "seconds": self.seconds, "table": self.table(), "rows": self.rows}


def evaluate(model="tiny-chat", n: int = 120, *, seed: int = 0, with_tools: bool = True, without_tools: bool = True,
             max_steps: int = 4, max_new_tokens: int = 48, tasks: list[dict] | None = None,
             progress=None) -> EvalResult:
    """Run every task with tools (calculator, lookup) and without tools; returns the scores side by side."""
    from .chat_models import make_chat_model
    from .loop import run

    tasks = tasks if tasks is not None else eval_tasks(n, seed)
    chat = make_chat_model(model, max_new_tokens=max_new_tokens)
    label = model if isinstance(model, str) else getattr(chat, "_llm_type", type(chat).__name__)
    rows = []
    t0 = time.perf_counter()
    for i, task in enumerate(tasks):
        row = dict(kind=task["kind"], question=task["question"], expected=task["answer"])
        if with_tools:
            r = run(task["question"], model=chat, tools="calculator,lookup", max_steps=max_steps)
            row.update(answer_tools=r.answer, ok_tools=is_correct(r.answer, task["answer"]),
                       tool_calls=[f"{s.name}({', '.join(f'{k}={v!r}' for k, v in s.args.items())})"
                                   for s in r.tool_steps], steps=r.n_model_calls)
        if without_tools:
            r = run(task["question"], model=chat, tools=None, max_steps=1)
            row.update(answer_direct=r.answer, ok_direct=is_correct(r.answer, task["answer"]))
        rows.append(row)
        if progress:
            progress(i + 1, len(tasks), row)
    return EvalResult(str(label), rows, time.perf_counter() - t0, with_tools, without_tools)
