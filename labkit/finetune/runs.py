"""Where runs live, atomic checkpoints, and the names other magics can load.

A run named ``NAME`` lives in ``runs_dir()/NAME`` (``$LABKIT_HOME/runs`` or ``~/.cache/labkit/runs``)::

    run.json            what was asked (method, model, hyper-parameters, data summary) -- used by --resume
    checkpoints/        checkpoint-<step>/ folders written by the trainer, each one complete or absent
    adapter/            the LoRA adapter (peft format), for lora/qlora/dpo-with-lora
    model/              a full transformers model folder (LoRA merged in) + tokenizer: what ``load(NAME)`` reads
    README.md           the model card

Checkpoints are atomic: the trainer writes into ``checkpoints/.partial/``, and only a complete folder is renamed to
``checkpoint-<step>`` (a rename is atomic on one file system). An interrupt or a full disk leaves at worst a
``.partial`` folder, which the next save or resume throws away; the previous checkpoint is never touched.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path

from .. import session
from ..errors import LabkitError, LabkitUsageError
from ..atomic import recover_folder
from ..runtime import labkit_home, runs_dir  # noqa: F401  (runs_dir is part of this module's API)
from ..faults import point

PARTIAL = ".partial"
_CKPT = re.compile(r"^checkpoint-(\d+)$")
_REGISTERED: dict[str, Path] = session.store("model")  # the session registry's models (one list, with labkit.models)


def home() -> Path:
    return labkit_home()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}", name):
        raise LabkitUsageError(f"run name {name!r} must be letters, digits, '_', '-' or '.', like `my_lora`")
    return name


def run_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    return Path(root) / check_name(name) if root else runs_dir() / check_name(name)


def ensure_writable(folder: Path) -> None:
    """Create ``folder`` and prove a file can be written there, or raise a clear LabkitError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise LabkitError(
            f"cannot write the run to {folder} ({exc.strerror or exc}). Pick another place with "
            f"output_dir=... / LABKIT_HOME=<a writable folder>, or free some disk space.") from None


def checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    ck = Path(folder) / "checkpoints"
    if not ck.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ck.iterdir() if p.is_dir() and (m := _CKPT.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: Path) -> Path | None:
    found = checkpoints(folder)
    return found[-1] if found else None


def clean_partial(folder: Path) -> list[str]:
    """What an interrupted run left in ``folder``: an unfinished checkpoint (removed) and a checkpoint moved aside
    mid-swap (put back). Returns what was found, so the next call can say so."""
    found = []
    staging = Path(folder) / "checkpoints" / PARTIAL
    if staging.exists():
        found.append("an unfinished checkpoint was thrown away")
        shutil.rmtree(staging, ignore_errors=True)
    ck = Path(folder) / "checkpoints"
    # publish() and the final save both swap through NAME.old, as labkit.atomic.replace_folder does
    moved = [old.with_name(old.name[:-len(".old")]) for old in ck.glob("checkpoint-*.old")] if ck.is_dir() else []
    for target in sorted(moved) + [Path(folder) / "model", Path(folder) / "adapter"]:
        note = recover_folder(target)
        if note:
            found.append(note)
    return found


def publish(partial_ckpt: Path, final: Path) -> None:
    """Move a fully written checkpoint into place (atomic rename)."""
    point("checkpoint.staged")
    if final.exists():  # the same step saved twice (a stop right after a periodic save): replace it
        trash = final.with_name(final.name + ".old")
        shutil.rmtree(trash, ignore_errors=True)
        os.rename(final, trash)
        point("checkpoint.swap")
        os.rename(partial_ckpt, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(partial_ckpt, final)


def rotate(folder: Path, keep: int) -> None:
    for old in checkpoints(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def disk_error(exc: OSError, folder: Path, previous: Path | None) -> LabkitError:
    why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    kept = f"The previous checkpoint {previous} is intact; `resume` continues from it." if previous else \
        "No earlier checkpoint exists yet."
    return LabkitError(f"could not write a checkpoint under {folder} ({why}). {kept} Free space or choose a "
                       f"writable LABKIT_HOME, then run again with `resume`.")


def atomic_trainer(base):
    """A subclass of a transformers/trl trainer class whose checkpoints are written atomically.

    Only the *saving* is changed (``_save_checkpoint``); the training loop is the library's.
    """

    class AtomicCheckpoints(base):
        _lk_staging = False

        def _get_output_dir(self, trial):
            out = super()._get_output_dir(trial)
            return os.path.join(out, PARTIAL) if self._lk_staging else out

        def _save_checkpoint(self, model, trial):
            root = Path(super()._get_output_dir(trial))
            staging = root / PARTIAL
            shutil.rmtree(staging, ignore_errors=True)
            name = f"checkpoint-{self.state.global_step}"
            previous = latest_checkpoint(root.parent)
            self._lk_staging = True
            try:
                super()._save_checkpoint(model, trial)
                publish(staging / name, root / name)
            except OSError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise disk_error(exc, root, previous) from None
            finally:
                self._lk_staging = False
            shutil.rmtree(staging, ignore_errors=True)
            rotate(root.parent, getattr(self, "_lk_keep", 2))

    AtomicCheckpoints.__name__ = f"Atomic{base.__name__}"
    return AtomicCheckpoints


def write_json_atomic(path: Path, data: dict) -> None:
    from ..atomic import write_json

    write_json(path, data)


# ------------------------------------------------------------------------------------------------ registration
def register(name: str, path: str | os.PathLike) -> None:
    """Make ``name`` loadable by the other magics (``%%generate --model NAME``) in this session.

    Through the one model door (``labkit.models.register``, which names it in ``labkit.session``). A folder the
    door refuses (no config.json: nothing a loader could read) is still named for the finetune engine's own
    ``resolve``, as before.
    """
    from .. import models

    try:
        models.register(name, path)
    except LabkitUsageError:
        session.add("model", name, Path(path))


def resolve(name: str) -> Path | None:
    """The model folder of a run registered in this session, or of a saved run under ``runs_dir()``."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    try:
        folder = run_dir(name) / "model"
    except LabkitUsageError:
        return None
    return folder if (folder / "config.json").is_file() else None


def registered() -> dict[str, Path]:
    return session.items("model")
