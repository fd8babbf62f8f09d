"""What this kernel session has named: trained tokenizers, models made here (fine-tuned runs), RAG indexes.

One registry, with public functions; the engines and the magics go through it, and nothing else keeps a list of
session names. It lives as long as the Python process (the kernel): a restart forgets it (saved runs and
indexes stay on disk and can be named again).

    >>> from labkit import session
    >>> session.names("model")            # ['my_lora', ...]: %%finetune --out NAME, labkit.models.register
    >>> session.get("index", "default")   # the %%rag index called 'default', or None
    >>> print(session.summary())          # everything this session has named

Kinds: ``"tokenizer"`` (a labkit Tokenizer, from ``labkit.tokenize.train``), ``"model"`` (a model folder,
from ``labkit.models.register``, which ``%%finetune`` calls), ``"index"`` (a ``labkit.rag.Index``).
"""
from __future__ import annotations

import threading
from typing import Any

from .errors import LabkitUsageError

KINDS = {
    "tokenizer": "tokenizers trained here (labkit.tokenize.train, %%tokenize --train)",
    "model": "models made here (labkit.models.register, %%finetune --out NAME): their folders",
    "index": "RAG indexes (labkit.rag.name_index, %%rag --index NAME)",
}

_STORE: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
_lock = threading.RLock()


def _kind(kind: str) -> dict[str, Any]:
    try:
        return _STORE[kind]
    except KeyError:
        raise LabkitUsageError(f"unknown kind of session name {kind!r}; kinds: {', '.join(KINDS)}") from None


def store(kind: str) -> dict[str, Any]:
    """The live mapping behind one kind (the engines' old module-level names are this same dict)."""
    return _kind(kind)


def add(kind: str, name: str, value: Any) -> None:
    """Name ``value`` in this session (a name given again replaces the old value)."""
    if not isinstance(name, str) or not name.strip():
        raise LabkitUsageError(f"a {kind} needs a non-empty name, not {name!r}")
    with _lock:
        _kind(kind)[name.strip()] = value


def get(kind: str, name: str, default: Any = None) -> Any:
    """The value named ``name`` in this session, or ``default``."""
    return _kind(kind).get(name, default)


def names(kind: str) -> list[str]:
    """The names of one kind, in the order they were given."""
    return list(_kind(kind))


def items(kind: str) -> dict[str, Any]:
    """A copy of one kind's names and values."""
    with _lock:
        return dict(_kind(kind))


def remove(kind: str, name: str | None = None) -> None:
    """Forget one name (all names of the kind when ``name`` is None). An unknown name is not an error."""
    with _lock:
        if name is None:
            _kind(kind).clear()
        else:
            _kind(kind).pop(name, None)


def summary() -> str:
    """What this session has named, one line per kind."""
    lines = []
    for kind, what in KINDS.items():
        got = names(kind)
        plural = "indexes" if kind == "index" else kind + "s"
        lines.append(f"{plural}: {', '.join(got) if got else '(none)'}  — {what}")
    return "\n".join(lines)
