"""Checked exercises for the labs, and solutions a learner reveals on purpose.

Convention (nbgrader-compatible markers, so instructors can grade with nbgrader or otter-grader):

    # Exercise 2: how many tokens does cl100k give for "hello world"?
    ### BEGIN SOLUTION
    answer = labkit.tokenize.tokenize("hello world").n_tokens
    ### END SOLUTION
    check("Exercise 2", answer, expected=2, hint="call tokenize(...) and read .n_tokens")

The committed labs are the instructor version (solutions inside the markers). Student versions (``labkit labs
copy``, ``make lab``) replace each solution region by ``NAME = ...  # YOUR ANSWER HERE`` for every name it assigned,
and ``check`` treats ``...`` as "not answered yet" (a hint, no error), so "Run all" still works for a learner.
With ``LABKIT_STRICT_EXERCISES=1`` (set by ``make test``), a wrong answer raises, so CI catches a broken lab.

A stuck learner reveals one exercise's solution on purpose: ``solution("Exercise 2")`` finds it in the instructor
version of the current lab shipped with labkit and shows it. Each checked answer and each reveal is recorded in
the learner's progress store (``labkit.progress``), so progress can show "solved with help". The current lab is
the notebook the kernel runs (JupyterLab tells the kernel its path; VS Code too), else the lab whose cells this
kernel has run; ``lab=`` names it explicitly. Strict (CI) runs record nothing.
"""
from __future__ import annotations

import math
import os
import re
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LabkitUsageError

_RESULTS: dict[str, bool] = {}
_WARNED: set[str] = set()


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


def _warn_once(key: str, text: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(text, RuntimeWarning, stacklevel=3)


def _record(kind: str, lab: str | None, names: list[str]):
    """Record attempts/reveals in the progress store; never fails the learner's cell. Returns the last entry."""
    if _strict() or not lab:
        return None
    from . import progress

    entry = None
    try:
        for name, passed in names:
            entry = (progress.record_attempt(lab, name, passed) if kind == "attempt"
                     else progress.record_reveal(lab, name))
    except Exception as exc:  # a read-only home, a full disk: the exercise still works
        _warn_once("record", f"labkit could not record your progress in {progress.store_path()} "
                             f"({type(exc).__name__}: {exc}); set LABKIT_HOME to a writable folder to keep it")
    return entry


def check(name: str, answer: Any, expected: Any = None, *, hint: str = "", tol: float | None = None,
          explain: str = "") -> Feedback:
    """Check a learner's ``answer``. ``expected`` is a value or a predicate ``f(answer) -> bool``.

    Returns a Feedback (displayed as the cell's value). Unanswered (``...``): a nudge and the hint.
    Wrong: the hint. Right: a short confirmation and ``explain`` if given. An answered check (right or wrong)
    is recorded in the learner's progress (``labkit.progress``) under the current lab.
    """
    if answer is Ellipsis:
        fb = Feedback(f"⏳ {name}: not answered yet. " + (f"Hint: {hint}" if hint else ""))
        fb.ok = False
        _RESULTS[name] = False
        return fb
    ok = _matches(answer, expected, tol)
    _RESULTS[name] = ok
    if not _strict():  # CI runs of the labs record nothing (and need not look for the lab)
        _record("attempt", _quiet_current_lab(), [(name, ok)])
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


# ------------------------------------------------------------------------------------------------ the current lab
def _instructor_labs() -> list[Path]:
    from .labs import labs_dir

    return sorted(p for p in labs_dir().glob("*.ipynb") if not p.name.endswith(".updated.ipynb"))


def find_lab(name: str | os.PathLike) -> Path | None:
    """The shipped instructor notebook for a lab name or a notebook path: ``03_tokenization``, ``03``,
    ``labs-student/03_tokenization.ipynb``, ``03_tokenization-Copy1.ipynb``; None when no lab fits."""
    stem = Path(str(name)).name
    stem = stem[:-len(".ipynb")] if stem.endswith(".ipynb") else stem
    stem = stem[:-len(".updated")] if stem.endswith(".updated") else stem
    labs = _instructor_labs()
    for p in labs:
        if p.stem == stem:
            return p
    prefixed = [p for p in labs if stem.startswith(p.stem)]  # a copy: 03_tokenization-Copy1
    if len(prefixed) == 1:
        return prefixed[0]
    number = re.match(r"(\d+)(?:\D|$)", stem)
    if number:
        same = [p for p in labs if re.match(rf"0*{int(number.group(1))}(?:\D|$)", p.stem)]
        if len(same) == 1:
            return same[0]
    return None


def _shell():
    """The IPython shell this code runs in, or None. IPython is not imported for this: a process that has not
    imported it runs in no shell (this module stays plain Python, usable from scripts and graders)."""
    import sys

    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


_CELLS_CACHE: dict[Path, tuple[float, frozenset[str]]] = {}


def _plain_cells(path: Path) -> frozenset[str]:
    """The lab's code cells without a solution region (the same in the student and instructor versions)."""
    import nbformat

    mtime = path.stat().st_mtime
    cached = _CELLS_CACHE.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    nb = nbformat.read(str(path), as_version=4)
    cells = frozenset(c.source.strip() for c in nb.cells
                      if c.cell_type == "code" and c.source.strip() and "### BEGIN" not in c.source)
    _CELLS_CACHE[path] = (mtime, cells)
    return cells


def current_lab() -> str | None:
    """The lab (its notebook's stem, e.g. ``03_tokenization``) this kernel is running, or None.

    The notebook's path as JupyterLab (``JPY_SESSION_NAME`` / ``__session__``) or VS Code (``__vsc_ipynb_file__``)
    tells the kernel; failing that, the lab most of whose cells this kernel has run (its input history)."""
    shell = _shell()
    ns = getattr(shell, "user_ns", None) or {}
    for candidate in (ns.get("__session__"), ns.get("__vsc_ipynb_file__"), os.environ.get("JPY_SESSION_NAME")):
        if candidate and isinstance(candidate, str):
            found = find_lab(candidate)
            if found:
                return found.stem
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None) or []
    ran = {h.strip() for h in history if isinstance(h, str) and h.strip()}
    if not ran:
        return None
    scores = sorted(((len(ran & _plain_cells(p)), p.stem) for p in _instructor_labs()), reverse=True)
    if scores and scores[0][0] > 0 and (len(scores) == 1 or scores[0][0] > scores[1][0]):
        return scores[0][1]
    return None


def _quiet_current_lab() -> str | None:
    try:
        return current_lab()
    except Exception:  # labs missing, an unreadable notebook: recording is a bonus, never an error
        return None


# ------------------------------------------------------------------------------------------------ solutions
_LABEL = re.compile(r"\bexercise\s+(\d+[a-z]?)\b", re.I)
_HEADING_LABEL = re.compile(r"^\s*(?:#+\s*|\*\*)\s*exercise\s+(\d+[a-z]?)\b", re.I | re.M)
_COMMENT_LABEL = re.compile(r"^\s*#\s*exercise\s+(\d+[a-z]?)\b", re.I | re.M)
_CHECK_NAME = re.compile(r"(?<![\w.])check\(\s*(['\"])(.+?)\1")


def _key(name: Any) -> str:
    """``"Exercise 2"``, ``"exercise  2"``, ``"ex2"``, ``2`` -> ``"exercise 2"``; other names: lower-cased."""
    text = " ".join(str(name).split()).lower()
    m = re.fullmatch(r"(?:ex(?:ercise)?[\s_.-]*)?(\d+[a-z]?)", text)
    return f"exercise {m.group(1)}" if m else text


@dataclass
class Exercise:
    """One exercise of a lab: what its checks call it, its heading's label, and its solution."""

    name: str  # how to ask for it: the first check() name (else the heading's "Exercise N")
    checks: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # "Exercise 2" from a heading or a comment
    cells: list[int] = field(default_factory=list)  # 1-based cell numbers holding the solution
    solution: str = ""
    written: bool = False  # a markdown (written) answer, not code

    def keys(self) -> set[str]:
        return {_key(n) for n in self.checks + self.labels + [self.name]}


def lab_exercises(lab: str | os.PathLike) -> list[Exercise]:
    """The exercises of a lab, in order, with their solutions, read from the instructor version labkit ships."""
    import nbformat

    from .grading import _regions

    path = find_lab(lab)
    if path is None:
        raise LabkitUsageError(f"no lab {str(lab)!r}; the labs are: " + ", ".join(p.stem for p in _instructor_labs()))
    nb = nbformat.read(str(path), as_version=4)
    exercises: list[Exercise] = []
    pending: str | None = None  # the "Exercise N" of the latest heading not yet given to a solution
    for idx, cell in enumerate(nb.cells):
        lines = cell.source.splitlines(keepends=True)
        regions = [(s, e) for kind, s, e, _ in _regions(lines, f"{path.name}, cell {idx + 1}") if kind == "SOLUTION"]
        if cell.cell_type == "markdown":
            labels = _HEADING_LABEL.findall(cell.source)
            if not regions:
                pending = f"Exercise {labels[-1]}" if labels else pending
                continue
            label = f"Exercise {labels[-1]}" if labels else pending
            checks = []
        else:
            if not regions:
                continue
            comment = _COMMENT_LABEL.findall(cell.source)
            label = f"Exercise {comment[0]}" if comment else pending
            checks = list(dict.fromkeys(m.group(2) for m in _CHECK_NAME.finditer(cell.source)))
        pending = None
        body = "\n".join(textwrap.dedent("".join(lines[s + 1:e])).strip("\n") for s, e in regions)
        name = checks[0] if checks else label or f"cell {idx + 1}"
        ex = next((x for x in exercises if x.keys() & {_key(n) for n in checks}), None)
        if ex is None:
            exercises.append(Exercise(name, checks, [label] if label else [], [idx + 1], body,
                                      cell.cell_type == "markdown"))
        else:  # one exercise over several cells
            ex.cells.append(idx + 1)
            ex.solution += "\n\n" + body
    return exercises


@dataclass
class Solution:
    """A revealed solution: shown as a code block in a notebook, as text elsewhere."""

    lab: str
    exercise: str
    code: str
    written: bool = False
    note: str = ""

    def _header(self) -> str:
        return f"🔓 Solution of {self.exercise} ({self.lab})" + (f": {self.note}" if self.note else "")

    def __str__(self):
        return f"{self._header()}\n\n{textwrap.indent(self.code, '    ')}\n"

    __repr__ = __str__

    def _repr_markdown_(self):
        fence = "```" if "```" not in self.code else "~~~~"
        if self.written:
            return f"**{self._header()}**\n\n{self.code}\n"
        return f"**{self._header()}**\n\n{fence}python\n{self.code}\n{fence}\n"


def _exercise_list(exercises: list[Exercise]) -> str:
    return ", ".join(e.name for e in exercises) or "(none)"


def _find(exercise: str | int, lab: str | os.PathLike | None) -> tuple[str, Exercise]:
    name = lab if lab is not None else current_lab()
    if name is None:
        raise LabkitUsageError(
            f"labkit cannot tell which lab this notebook is; name it: solution({exercise!r}, "
            f"lab='03_tokenization'). The labs are: " + ", ".join(p.stem for p in _instructor_labs()))
    exercises = lab_exercises(name)
    stem = find_lab(name).stem
    want = _key(exercise)
    found = [e for e in exercises if want in {_key(c) for c in e.checks} or _key(e.name) == want]
    if not found:
        found = [e for e in exercises if want in e.keys()]
    if not found:
        raise LabkitUsageError(f"no exercise {exercise!r} in lab {stem}; its exercises are: "
                               f"{_exercise_list(exercises)}")
    if len(found) > 1:
        raise LabkitUsageError(f"{exercise!r} names several exercises of lab {stem} "
                               f"({_exercise_list(found)}): ask for one of those names")
    return stem, found[0]


def find_solution(exercise: str | int, lab: str | os.PathLike | None = None) -> Solution:
    """The solution of ``exercise`` (``"Exercise 2"``, ``2``, or its check name) in ``lab`` (default: the current
    lab), from the instructor version shipped with labkit. Shows and records nothing: see ``solution``."""
    stem, ex = _find(exercise, lab)
    return Solution(stem, ex.name, ex.solution, ex.written)


def solution(exercise: str | int, lab: str | os.PathLike | None = None) -> None:
    """Reveal the solution of one exercise of the current lab, on purpose, and record the reveal.

    ``solution("Exercise 2")`` shows the code that answers Exercise 2 (from the instructor version of this lab
    shipped with labkit) and records in your progress that you looked: a correct check afterwards counts as
    "solved with help". ``lab=`` names the lab when labkit cannot tell (``"03_tokenization"`` or ``"03"``).
    """
    from .progress import status

    stem, ex = _find(exercise, lab)
    sol = Solution(stem, ex.name, ex.solution, ex.written)
    entry = _record("reveal", stem, [(n, None) for n in (ex.checks or [ex.name])])
    if entry is not None:
        sol.note = ("you had solved it already, so it stays solved" if status(entry) == "solved" else
                    "recorded in your progress; a correct check from now on counts as solved with help")
    if _shell() is not None:
        from .viewable import display

        display(sol)  # the view layer shows it in the notebook
    else:
        print(sol)


def yours(answer: Any, fallback: Any, what: str = "") -> Any:
    """``answer`` when the learner has written it, else ``fallback`` (with a one-line note): lets the rest of a
    lab run on the learner's function once it exists, and on the kit's own until then. ``labkit student
    check`` treats it like ``check``: an unanswered ``...`` passed here is not a failing use."""
    if answer is Ellipsis:
        print(f"(not written yet: using the kit's own {what or 'version'} until you do)")
        return fallback
    return answer
