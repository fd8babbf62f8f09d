"""Writing a folder or a JSON file so that a reader never sees it half-written: write beside it, then rename."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from .faults import point


def replace_folder(folder: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` fills a fresh ``FOLDER.partial``; then it takes ``folder``'s place (the old one is moved to
    ``FOLDER.old`` first and removed after). Killed while writing: ``folder`` is untouched, and the next call
    throws the ``.partial`` away. Killed between the two renames: :func:`recover_folder` puts ``.old`` back."""
    folder = Path(folder)
    tmp, old = folder.with_name(folder.name + ".partial"), folder.with_name(folder.name + ".old")
    recover_folder(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    point("folder.staged")
    if folder.exists():
        os.rename(folder, old)
        point("folder.swap")
    os.rename(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def recover_folder(folder: str | os.PathLike) -> str | None:
    """Undo what an interrupted :func:`replace_folder` left: a stray ``.partial`` is removed; a ``.old`` without
    its folder (killed between the renames) is put back. Returns what was found, for the caller to say."""
    folder = Path(folder)
    tmp, old = folder.with_name(folder.name + ".partial"), folder.with_name(folder.name + ".old")
    found = []
    if old.exists():
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(old, folder)
            found.append(f"{folder.name} restored from its previous version (a save was interrupted mid-swap)")
    if tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        found.append(f"an unfinished {tmp.name} thrown away (a save was interrupted)")
    return "; ".join(found) or None


def write_json(path: str | os.PathLike, data) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
