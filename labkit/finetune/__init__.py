"""Fine-tuning on live models: full, LoRA, QLoRA, DPO, GRPO and reward models, built on trl and peft.

    from labkit.finetune import finetune, load_data
    r = finetune("tiny-chat", "data.jsonl", method="lora", steps=60, name="my_lora")

See ``engine`` (the call), ``data`` (formats), ``runs`` (checkpoints, names), ``merging`` (model merging),
``rewards`` (GRPO rewards), ``quant`` (4-bit bases), ``tracking`` (MLflow logging of a run:
``finetune(..., callbacks=[MlflowTracking("experiment")])``). Nothing heavy is imported until a function runs.
"""
from __future__ import annotations

import logging as _logging

# bitsandbytes' CPU backend warns at import that an optional hub kernel is missing (we never download it)
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)

from .config import FinetuneConfig  # noqa: F401  (light: no torch)
from .data import DataError, load_data  # noqa: F401  (light: no torch)
from .runs import register, registered, resolve, runs_dir  # noqa: F401


def finetune(*args, **kwargs):
    """Train a model; see ``labkit.finetune.engine.finetune``."""
    from .engine import finetune as _finetune

    return _finetune(*args, **kwargs)


def __getattr__(name):
    if name in ("FinetuneResult", "METHODS", "generate", "score", "linear_module_names", "resolve_model", "heldout_loss",
                "SESSION_CURVES"):
        from . import engine

        return getattr(engine, name)
    if name == "StopSignal":
        from .callbacks import StopSignal

        return StopSignal
    raise AttributeError(name)
