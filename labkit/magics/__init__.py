"""The IPython layer: one small module per magic, all sharing one grammar (``labkit.magics._base``).

Each magic module defines ``MAGICS``: a list of ``Magic`` objects (see ``_base``). ``register`` adds them all.
Modules are imported here, at ``%load_ext labkit``, so they must not import torch/transformers at module level.
"""
from __future__ import annotations

import importlib
import importlib.util

# One entry per magic module; a module that does not exist yet (a feature still being built) is skipped.
MAGIC_MODULES = ["tokenize", "attend", "generate", "finetune", "rag", "agent"]


def magic_modules():
    for name in MAGIC_MODULES:
        full = f"{__name__}.{name}"
        if importlib.util.find_spec(full) is not None:
            yield importlib.import_module(full)


def all_magics():
    from ._base import Magic  # noqa: F401

    out = []
    for mod in magic_modules():
        out.extend(mod.MAGICS)
    from .info import MAGICS as info_magics

    out.extend(info_magics)
    return out


def register(ipython) -> None:
    from . import info  # noqa: F401  (the %labkit line magic)

    for magic in all_magics():
        magic.register(ipython)
