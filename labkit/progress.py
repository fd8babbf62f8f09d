"""A learner's progress: each checked attempt and each revealed solution, per lab and exercise.

One small JSON file per user, ``store_path()``: ``$LABKIT_HOME/progress.json`` when ``LABKIT_HOME`` is set, else
``$XDG_DATA_HOME/labkit/progress.json`` (``~/.local/share/labkit/progress.json``; ``%APPDATA%\\labkit`` on
Windows). ``labkit.exercises.check`` calls ``record_attempt``; ``labkit.exercises.solution`` calls
``record_reveal``. The JupyterLab side reads the same file, so its shape is public and versioned::

    {"version": 1,
     "labs": {"03_tokenization": {
         "Exercise 1": {"tries": 2, "first_passed": "2025-01-05T10:02:11.123+00:00", "revealed": null,
                        "attempts": [{"time": "...", "passed": false}, {"time": "...", "passed": true}]},
         "Exercise 2": {"tries": 1, "first_passed": "...", "revealed": "...", "attempts": [...]}}}}

Times are ISO 8601 in UTC (they sort as text). ``attempts`` keeps the last ``MAX_ATTEMPTS``; ``tries`` counts all.
``status`` turns an entry into what a progress view shows: ``solved``, ``solved with help`` (the solution was
revealed before the first correct answer), ``revealed``, ``tried`` or ``not started``.

Writes are atomic (a temporary file in the same folder, then ``os.replace``) and, where the OS has ``fcntl``, two
kernels updating at once take turns. A store that is not valid JSON of this shape is renamed aside
(``progress.json.corrupt-<time>``) with a warning and a fresh one is started: progress is never worth a crash.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

VERSION = 1
MAX_ATTEMPTS = 50

__all__ = ["store_path", "load", "record_attempt", "record_reveal", "status", "VERSION"]


def store_path() -> Path:
    """Where this user's progress is kept (the file may not exist yet)."""
    home = os.environ.get("LABKIT_HOME")
    if home:
        return Path(home).expanduser() / "progress.json"
    if os.name == "nt" and os.environ.get("APPDATA"):
        base = Path(os.environ["APPDATA"])
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "labkit" / "progress.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _empty() -> dict:
    return {"version": VERSION, "labs": {}}


def _valid(data) -> bool:
    if not (isinstance(data, dict) and isinstance(data.get("labs"), dict)):
        return False
    return all(isinstance(ex, dict) and all(isinstance(e, dict) for e in ex.values())
               for ex in data["labs"].values())


def _read(path: Path) -> dict:
    """The store's data; a missing file is an empty store, a corrupt one is set aside (renamed) and replaced."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _empty()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if _valid(data):
        return data
    aside = path.with_name(f"{path.name}.corrupt-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}")
    try:
        os.replace(path, aside)
        where = f"moved aside to {aside}"
    except OSError as exc:
        where = f"left in place ({exc})"
    warnings.warn(f"labkit progress store {path} was not readable ({where}); starting a fresh one",
                  RuntimeWarning, stacklevel=3)
    return _empty()


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".progress-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``path.lock`` (POSIX) so concurrent read-modify-writes do not lose updates."""
    try:
        import fcntl
    except ImportError:  # Windows: atomic replace only
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load(path: str | os.PathLike | None = None) -> dict:
    """The whole store (``{"version": 1, "labs": {lab: {exercise: entry}}}``); empty when nothing is recorded."""
    path = Path(path) if path else store_path()
    with _locked(path):
        return _read(path)


def _update(lab: str, exercise: str, change, path) -> dict:
    if not lab or not exercise:
        raise ValueError(f"progress needs a lab and an exercise name (got lab={lab!r}, exercise={exercise!r})")
    path = Path(path) if path else store_path()
    with _locked(path):
        data = _read(path)
        entry = data["labs"].setdefault(str(lab), {}).setdefault(
            str(exercise), {"tries": 0, "first_passed": None, "revealed": None, "attempts": []})
        change(entry)
        data["version"] = VERSION
        _write(path, data)
    return entry


def record_attempt(lab: str, exercise: str, passed: bool, *, path: str | os.PathLike | None = None) -> dict:
    """Record one checked answer (right or wrong) of ``exercise`` in ``lab``; returns the exercise's entry."""
    when = _now()

    def change(entry):
        entry["tries"] = int(entry.get("tries", 0)) + 1
        entry["attempts"] = (list(entry.get("attempts", [])) + [{"time": when, "passed": bool(passed)}])[-MAX_ATTEMPTS:]
        if passed and not entry.get("first_passed"):
            entry["first_passed"] = when

    return _update(lab, exercise, change, path)


def record_reveal(lab: str, exercise: str, *, path: str | os.PathLike | None = None) -> dict:
    """Record that the learner revealed the solution of ``exercise`` in ``lab`` (the first reveal's time is kept)."""
    when = _now()

    def change(entry):
        if not entry.get("revealed"):
            entry["revealed"] = when

    return _update(lab, exercise, change, path)


def status(entry: dict | None) -> str:
    """``solved``, ``solved with help``, ``revealed``, ``tried`` or ``not started`` for one exercise's entry."""
    if not entry:
        return "not started"
    first, revealed = entry.get("first_passed"), entry.get("revealed")
    if first:
        return "solved with help" if revealed and revealed <= first else "solved"
    if revealed:
        return "revealed"
    return "tried" if entry.get("tries") else "not started"
