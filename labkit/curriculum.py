"""The course: the roadmap's 4 parts and 22 chapters (and the welcome), each chapter's lab when it has one, and a
learner's standing on it, read from the progress store (``labkit.progress``).

Plain Python, nothing heavy: ``labkit progress`` prints it, the Jupyter server extension (``labkit.serverext``)
serves it as JSON to the JupyterLab panel, and the class overview reads it per student.

A lab's status: ``not started`` (no answered check), ``in progress`` (some), ``done`` (every exercise solved,
with or without a revealed solution). Chapters whose lab is not written yet show ``no lab yet``.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The roadmap (curriculum/ROADMAP.md), chapter numbers as in its headings.
PARTS: list[tuple[str, list[int]]] = [
    ("Welcome", [0]),
    ("Part 1 · The foundations", [1, 2, 3, 4, 5]),
    ("Part 2 · Building and training models", [6, 7, 8, 9, 10]),
    ("Part 3 · Advanced topics and specialization", [11, 12, 13, 14, 15, 16]),
    ("Part 4 · Engineering and applications", [17, 18, 19, 20, 21, 22]),
]
TITLES: dict[int, str] = {
    0: "Welcome to labkit",
    1: "Neural networks foundations for LLMs",
    2: "Traditional language models",
    3: "Tokenization",
    4: "Embeddings",
    5: "The transformer architecture",
    6: "Data preparation",
    7: "Pre-training large language models",
    8: "Post-training datasets",
    9: "Supervised fine-tuning (SFT)",
    10: "Preference alignment",
    11: "Model evaluation",
    12: "Reasoning",
    13: "Quantization",
    14: "Inference optimization",
    15: "Model architecture variants",
    16: "Model enhancement",
    17: "Running LLMs and building applications",
    18: "Retrieval augmented generation (RAG)",
    19: "Tool use and AI agents",
    20: "Multimodal LLMs",
    21: "Securing LLMs and responsible AI",
    22: "LLMOps",
}
STATUSES = ("no lab yet", "not started", "in progress", "done")
SOLVED = ("solved", "solved with help")
_LAB_STEM = re.compile(r"^(\d\d)_[A-Za-z0-9_]+$")


@dataclass
class ExerciseState:
    name: str
    status: str  # labkit.progress.status: solved, solved with help, revealed, tried, not started
    tries: int = 0


@dataclass
class Chapter:
    number: int
    title: str
    part: str
    lab: str | None = None  # the lab's stem, e.g. "03_tokenization"; None when not written yet
    exercises: int = 0
    solved: int = 0
    tried: int = 0
    status: str = "no lab yet"
    detail: list[ExerciseState] = field(default_factory=list)


def lab_stems() -> dict[int, str]:
    """Chapter number -> the stem of the lab labkit ships for it."""
    from .labs import labs_dir

    out: dict[int, str] = {}
    for p in sorted(labs_dir().glob("*.ipynb")):
        m = _LAB_STEM.match(p.stem)
        if m and int(m.group(1)) in TITLES:
            out.setdefault(int(m.group(1)), p.stem)
    return out


def is_lab(stem: str) -> bool:
    """True for the stem of a lab labkit ships (the only names the server extension acts on)."""
    return isinstance(stem, str) and bool(_LAB_STEM.match(stem)) and stem in lab_stems().values()


_EXERCISES: dict[tuple[str, float], list] = {}


def _exercises(stem: str) -> list:
    from .exercises import find_lab, lab_exercises

    path = find_lab(stem)
    key = (stem, path.stat().st_mtime if path else 0.0)
    if key not in _EXERCISES:
        _EXERCISES[key] = lab_exercises(stem)
    return _EXERCISES[key]


def lab_standing(stem: str, data: dict | None = None) -> Chapter:
    """One lab's standing from a progress store's data (``labkit.progress.load()``'s shape; default: this
    user's store)."""
    from . import progress
    from .exercises import _key

    if data is None:
        data = progress.load()
    m = _LAB_STEM.match(stem)
    number = int(m.group(1)) if m else -1
    part = next((name for name, nums in PARTS if number in nums), "")
    chapter = Chapter(number, TITLES.get(number, stem), part, stem)
    entries = (data.get("labs") or {}).get(stem) or {}
    by_key = {_key(name): entry for name, entry in entries.items()}
    for ex in _exercises(stem):
        found = [by_key[k] for k in ex.keys() if k in by_key]
        # several checks of one exercise: solved when any of its checks was passed; tries add up
        states = [progress.status(e) for e in found]
        status = next((s for s in ("solved", "solved with help", "revealed", "tried") if s in states), "not started")
        chapter.detail.append(ExerciseState(ex.name, status, sum(int(e.get("tries", 0)) for e in found)))
    chapter.exercises = len(chapter.detail)
    chapter.solved = sum(d.status in SOLVED for d in chapter.detail)
    chapter.tried = sum(d.status != "not started" for d in chapter.detail)
    if chapter.exercises and chapter.solved == chapter.exercises:
        chapter.status = "done"
    elif chapter.tried:
        chapter.status = "in progress"
    else:
        chapter.status = "not started"
    return chapter


def overview(data: dict | None = None, store: str | os.PathLike | None = None) -> list[dict]:
    """The whole course as plain data: one dict per part (``name``, ``chapters``), each chapter a ``Chapter`` as a
    dict. ``data`` is a progress store's content; else the store at ``store``; else this user's."""
    from . import progress

    if data is None:
        data = progress.load(store)
    stems = lab_stems()
    parts = []
    for name, numbers in PARTS:
        chapters = []
        for n in numbers:
            if n in stems:
                ch = lab_standing(stems[n], data)
            else:
                ch = Chapter(n, TITLES[n], name)
            chapters.append(asdict(ch))
        parts.append({"name": name, "chapters": chapters})
    return parts


def summary(parts: list[dict]) -> dict:
    """Counts over an ``overview``: labs, done, in progress, exercises solved of all."""
    chapters = [c for p in parts for c in p["chapters"] if c["lab"]]
    return {"labs": len(chapters), "done": sum(c["status"] == "done" for c in chapters),
            "in_progress": sum(c["status"] == "in progress" for c in chapters),
            "solved": sum(c["solved"] for c in chapters), "exercises": sum(c["exercises"] for c in chapters)}


def format_overview(parts: list[dict]) -> str:
    """The course as text (``labkit progress``): one line per chapter with a bar of exercises solved."""
    lines = []
    for part in parts:
        lines.append(part["name"])
        for c in part["chapters"]:
            if not c["lab"]:
                lines.append(f"  {c['number']:>2}  {c['title']:<44} (no lab yet)")
                continue
            n, k = c["exercises"], c["solved"]
            bar = ("#" * k + "." * (n - k)) if n <= 12 else ("#" * round(12 * k / n)).ljust(12, ".")
            lines.append(f"  {c['number']:>2}  {c['title']:<44} [{bar}] {k}/{n}  {c['status']}")
    s = summary(parts)
    lines.append(f"{s['done']} of {s['labs']} labs done, {s['in_progress']} in progress; "
                 f"{s['solved']} of {s['exercises']} exercises solved")
    return "\n".join(lines)


def lab_path(root: str | os.PathLike, stem: str) -> Path:
    """Where a lab lives in a learner's folder (confined to it)."""
    root = Path(root).resolve()
    path = (root / f"{stem}.ipynb").resolve()
    if root not in path.parents:
        from .errors import LabkitUsageError

        raise LabkitUsageError(f"{stem!r} is not a lab name")
    return path
