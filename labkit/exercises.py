"""Checked exercises for the labs.

Convention (nbgrader-compatible markers, so instructors can grade with nbgrader or otter-grader):

    # Exercise 2: how many tokens does cl100k give for "hello world"?
    ### BEGIN SOLUTION
    answer = labkit.tokenize.tokenize("hello world").n_tokens
    ### END SOLUTION
    check("ex2", answer, expected=2, hint="call tokenize(...) and read .n_tokens")

The committed labs are the instructor version (solutions inside the markers). Student versions replace each
solution region by ``NAME = ...  # YOUR ANSWER HERE`` for every name it assigned (``labkit labs student``), and
``check`` treats ``...`` as "not answered yet" (a hint, no error), so "Run all" still works for a learner.
With ``LABKIT_STRICT_EXERCISES=1`` (set by ``make test``), a wrong answer raises, so CI catches a broken lab.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable

_RESULTS: dict[str, bool] = {}


def _strict() -> bool:
    return os.environ.get("LABKIT_STRICT_EXERCISES", "") not in ("", "0", "false", "no")


def _matches(answer: Any, expected: Any, tol: float | None) -> bool:
    if callable(expected):
        return bool(expected(answer))
    if tol is not None:
        try:
            if isinstance(expected, (list, tuple)):
                return len(answer) == len(expected) and all(
                    math.isclose(float(a), float(e), rel_tol=tol, abs_tol=tol) for a, e in zip(answer, expected))
            return math.isclose(float(answer), float(expected), rel_tol=tol, abs_tol=tol)
        except (TypeError, ValueError):
            return False
    if isinstance(expected, str) and isinstance(answer, str):
        return answer.strip().lower() == expected.strip().lower()
    try:
        return bool(answer == expected)
    except Exception:  # e.g. numpy arrays: ambiguous truth value
        import numpy as np

        return bool(np.array_equal(answer, expected))


class Feedback(str):
    """The printed verdict; also truthy/falsy via ``.ok``."""

    ok: bool

    def _repr_html_(self):
        color = "#166534" if self.ok else "#92400e"
        import html

        return f"<div style='color:{color};font-weight:600'>{html.escape(str(self))}</div>"

    def __repr__(self):
        return str(self)


def check(name: str, answer: Any, expected: Any = None, *, hint: str = "", tol: float | None = None,
          explain: str = "") -> Feedback:
    """Check a learner's ``answer``. ``expected`` is a value or a predicate ``f(answer) -> bool``.

    Returns a Feedback (displayed as the cell's value). Unanswered (``...``): a nudge and the hint.
    Wrong: the hint. Right: a short confirmation and ``explain`` if given.
    """
    if answer is Ellipsis:
        fb = Feedback(f"⏳ {name}: not answered yet. " + (f"Hint: {hint}" if hint else ""))
        fb.ok = False
        _RESULTS[name] = False
        return fb
    ok = _matches(answer, expected, tol)
    _RESULTS[name] = ok
    if ok:
        fb = Feedback(f"✅ {name}: correct! " + explain)
    else:
        fb = Feedback(f"❌ {name}: not quite (you gave {answer!r}). " + (f"Hint: {hint}" if hint else "Try again."))
        if _strict():
            raise AssertionError(str(fb))
    fb.ok = ok
    return fb


def score() -> str:
    """How many exercises of this session were answered correctly."""
    done = sum(_RESULTS.values())
    return f"{done}/{len(_RESULTS)} exercises correct"
