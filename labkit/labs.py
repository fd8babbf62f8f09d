"""The lab notebooks: where they are, and copying them to a learner's folder without ever overwriting work.

``copy_student_labs`` (``labkit labs copy DEST``, ``make lab``) copies the *student* versions (solutions removed,
see ``labkit.grading``); ``copy_labs`` (``labkit labs copy --instructor DEST``) copies files as they are, the
instructor versions by default. Both follow the same rule.

``copy_labs`` keeps a manifest (``.labkit-labs.json``) in the destination with the hash of every file as labkit
wrote it. On a later copy (a course update, or a learner who deleted a lab):

- a file that is missing is (re)stored;
- a file the learner has not touched (hash = manifest) is updated to the new version;
- a file the learner changed is left alone; when the course version changed too, the new version is written
  beside it as ``NAME.updated.ipynb`` and the report says so. Nothing is overwritten silently.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

_PKG = Path(__file__).resolve().parent
MANIFEST = ".labkit-labs.json"


def labs_dir() -> Path:
    for candidate in (_PKG / "_labs", _PKG.parent / "labs"):
        if candidate.is_dir() and any(candidate.glob("*.ipynb")):
            return candidate
    raise FileNotFoundError("labkit's lab notebooks are missing: reinstall labkit")


def lab_files(src: Path | None = None) -> list[Path]:
    src = src or labs_dir()
    return sorted(p for p in src.rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts
                  and p.name != ".keep" and "__pycache__" not in p.parts)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=".labkit-tmp-")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class CopyReport:
    dest: Path
    copied: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # learner's edits kept
    beside: list[str] = field(default_factory=list)  # new course version written next to an edited file
    kind: str = ""  # what was copied, e.g. "student versions (solutions removed)"

    def __str__(self):
        lines = [f"labs in {self.dest}" + (f", {self.kind}" if self.kind else "") + ":"]
        for label, items in (("copied", self.copied), ("restored (had been deleted)", self.restored),
                             ("updated to the new course version", self.updated),
                             ("already up to date", self.unchanged),
                             ("skipped: you changed these, your version is kept", self.kept),
                             ("new course version written beside your edited file", self.beside)):
            if items:
                lines.append(f"  {label}: {', '.join(items)}")
        return "\n".join(lines)


def _refuse_own_labs(dest: Path, src: Path) -> None:
    from .errors import LabkitUsageError

    if dest.resolve() == src.resolve():
        raise LabkitUsageError(f"{dest} is the folder the labs are copied from; pick another destination, "
                               f"e.g. ~/labkit-labs")


def copy_labs(dest: str | os.PathLike, src: str | os.PathLike | None = None) -> CopyReport:
    """Copy every file of ``src`` (default: labkit's labs, the instructor versions) into ``dest``, never
    overwriting a file the learner changed."""
    src = Path(src) if src else labs_dir()
    dest = Path(dest).expanduser()
    _refuse_own_labs(dest, src)
    dest.mkdir(parents=True, exist_ok=True)
    manifest_path = dest / MANIFEST
    try:
        state = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    except (OSError, json.JSONDecodeError):
        state = {}
    manifest: dict[str, str] = state.get("files", {})  # rel -> hash of what labkit last wrote there
    offered: dict[str, str] = state.get("offered", {})  # rel -> course hash last written beside an edited file
    report = CopyReport(dest)
    for s in lab_files(src):
        rel = s.relative_to(src).as_posix()
        d = dest / rel
        new_hash = _sha(s)
        if not d.exists():
            _atomic_copy(s, d)
            (report.restored if rel in manifest else report.copied).append(rel)
            manifest[rel] = new_hash
            continue
        have = _sha(d)
        if have == new_hash:
            report.unchanged.append(rel)
            manifest[rel] = new_hash
        elif manifest.get(rel) == have:  # untouched by the learner: safe to update
            _atomic_copy(s, d)
            report.updated.append(rel)
            manifest[rel] = new_hash
        else:  # the learner's work: never overwrite
            report.kept.append(rel)
            if manifest.get(rel) != new_hash and offered.get(rel) != new_hash:
                beside = d.with_name(d.stem + ".updated" + d.suffix)
                _atomic_copy(s, beside)
                report.beside.append(beside.relative_to(dest).as_posix())
                offered[rel] = new_hash
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"files": manifest, "offered": offered}, indent=1, sort_keys=True))
    os.replace(tmp, manifest_path)
    return report


def copy_student_labs(dest: str | os.PathLike, src: str | os.PathLike | None = None) -> CopyReport:
    """Copy the student versions of the labs in ``src`` (default: labkit's labs) into ``dest``: solutions
    removed (``labkit.grading``), with ``copy_labs``'s rule (a file the learner changed is never overwritten).

    The student versions are built into a temporary folder first; they are deterministic, so the manifest's hashes
    tell a learner's edit from a course update across runs."""
    from .grading import write_student_versions

    src = Path(src).expanduser() if src else labs_dir()
    dest = Path(dest).expanduser()
    _refuse_own_labs(dest, src)
    with tempfile.TemporaryDirectory(prefix="labkit-student-") as built:
        write_student_versions(built, src)
        report = copy_labs(dest, built)
    report.kind = "student versions (solutions removed)"
    return report


# ------------------------------------------------------------------------------------------------ one lab at a time
def _require_lab(stem: str, src: Path) -> None:
    """Only the stems of the labs labkit ships name a file here (no paths, no other notebooks)."""
    import re

    from .errors import LabkitUsageError

    if not (isinstance(stem, str) and re.fullmatch(r"\d\d_[A-Za-z0-9_]+", stem) and (src / f"{stem}.ipynb").is_file()):
        raise LabkitUsageError(f"no lab {stem!r}")


def copy_one_lab(dest: str | os.PathLike, stem: str, *, instructor: bool = False) -> CopyReport:
    """Bring one lab (``03_tokenization``) into ``dest`` with ``copy_labs``'s rule: copied when missing, updated when
    the learner never touched it, and when they did, their file is kept and a newer course version is written
    beside it as ``NAME.updated.ipynb``. The student version unless ``instructor``. (The JupyterLab panel's "open"
    and "get the course's update".)"""
    src = labs_dir()
    _require_lab(stem, src)
    dest = Path(dest).expanduser()
    _refuse_own_labs(dest, src)
    with tempfile.TemporaryDirectory(prefix="labkit-one-") as built:
        if instructor:
            shutil.copyfile(src / f"{stem}.ipynb", Path(built) / f"{stem}.ipynb")
        else:
            from .grading import write_student_versions

            write_student_versions(built, src, [f"{stem}.ipynb"])
        report = copy_labs(dest, built)
    report.kind = "instructor version" if instructor else "student version (solutions removed)"
    return report


def reset_lab(dest: str | os.PathLike, stem: str, *, instructor: bool = False) -> tuple[Path | None, CopyReport]:
    """Start a lab afresh: the learner's copy is kept beside it as ``NAME.old-YYYYmmdd-HHMMSS.ipynb`` (never
    deleted), then the course version is copied. Returns (where the old copy went, or None; the copy report)."""
    import time

    _require_lab(stem, labs_dir())
    dest = Path(dest).expanduser()
    _refuse_own_labs(dest, labs_dir())
    current = dest / f"{stem}.ipynb"
    kept = None
    if current.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        kept = dest / f"{stem}.old-{stamp}.ipynb"
        n = 1
        while kept.exists():
            n += 1
            kept = dest / f"{stem}.old-{stamp}-{n}.ipynb"
        os.replace(current, kept)
    return kept, copy_one_lab(dest, stem, instructor=instructor)
