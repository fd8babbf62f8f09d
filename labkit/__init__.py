"""labkit: the LLM Lab Kit.

``%load_ext labkit`` registers the cell magics; the engine is plain Python (``labkit.tokenize``, ``labkit.models``,
...). Nothing heavy (torch, transformers) is imported here: every engine function imports what it needs.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import LabkitError, LabkitUsageError, MemoryBudgetError  # noqa: E402  (light)

import logging as _logging

# bitsandbytes (for qlora) warns at every `import transformers` that an optional hub kernel is missing; nothing
# is downloaded and nothing is wrong, so keep learners' cells quiet.
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)


_SUBMODULES = {"models", "tokenize", "exercises", "runtime", "attend", "generate", "embeddings", "finetune", "rag",
               "agent", "security", "zoo", "labs", "grading", "doctor", "widgets", "progress", "reference", "speculative",
               "playground"}


def __getattr__(name: str):
    """Lazy access: ``labkit.models``, ``labkit.rag``, ... import on first use; ``labkit.tool`` is the agent's
    decorator that turns a Python function into a tool (``@labkit.tool``)."""
    import importlib

    if name == "tool":
        from .agent.tools import tool

        return tool
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")


def load(name: str, **kwargs):
    """Load a model (and its tokenizer) from the registry: zoo names, ``minilm``, local paths, hub ids, GGUF files."""
    from . import models

    return models.load(name, **kwargs)


def unload(name: str | None = None) -> None:
    """Forget cached models (all of them when ``name`` is None) so their memory can be freed."""
    from . import models

    models.unload(name)


def load_ipython_extension(ipython) -> None:
    """``%load_ext labkit``: register every magic."""
    import sys

    from . import runtime
    from .magics import register

    runtime.apply_thread_env()  # CPU_LIMIT -> OMP/MKL/OpenBLAS threads, before torch loads
    if "torch" in sys.modules:  # torch already imported in this kernel: set its pool now
        runtime.configure_torch()
    register(ipython)


def unload_ipython_extension(ipython) -> None:  # pragma: no cover - IPython calls it on %unload_ext
    pass
