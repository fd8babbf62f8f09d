"""``FinetuneConfig``: every setting of a fine-tuning run in one object, checked when it is made.

    >>> from labkit.finetune import FinetuneConfig, finetune
    >>> cfg = FinetuneConfig(method="lora", rank=8, steps=60, name="my_lora")   # a bad value fails here
    >>> finetune("tiny-chat", rows, config=cfg)
    >>> finetune("tiny-chat", rows, "lora", rank=8, steps=60)                   # the keyword form: the same run

``%%finetune`` fills one from its parsed options in one line (``FinetuneConfig.from_args``). Light: no torch.
Errors name the Python parameter (in backquotes); the magic shows them as its flags.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from typing import Any

from ..errors import LabkitUsageError

METHODS = ("full", "lora", "qlora", "dpo", "grpo", "reward")
DEFAULT_LR = {"full": 5e-4, "lora": 2e-3, "qlora": 2e-3, "dpo": 5e-5, "grpo": 5e-5, "reward": 5e-4}
PEFT_METHODS = ("lora", "qlora")

_RULES = {
    "steps": (1, 1_000_000, int), "epochs": (1e-3, 10_000, float), "lr": (1e-9, 1.0, float),
    "batch": (1, 4096, int), "rank": (1, 1024, int), "alpha": (1e-6, 1e6, float), "grad_accum": (1, 1024, int),
    "max_length": (8, 1_000_000, int), "save_every": (0, 1_000_000, int), "beta": (0.0, 100.0, float),
    "num_generations": (2, 256, int), "max_new_tokens": (1, 4096, int), "temperature": (1e-3, 10.0, float),
    "keep_checkpoints": (1, 1000, int), "seed": (0, 2**32 - 1, int), "bits": (4, 8, int),
    "warmup_steps": (0, 1_000_000, int),
}


def check_numbers(**values) -> None:
    """Each named number inside its range (None: not given), else a LabkitUsageError naming the parameter."""
    for key, v in values.items():
        if v is None or key not in _RULES:
            continue
        lo, hi, typ = _RULES[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi
        if typ is int and ok:
            ok = float(v).is_integer()
        if not ok:
            kind = "a whole number" if typ is int else "a number"
            raise LabkitUsageError(f"`{key}` = {v!r} makes no sense: it must be {kind} from {lo:g} to {hi:g}")
    if values.get("bits") not in (None, 4, 8):
        raise LabkitUsageError(f"`bits` must be 4 or 8, not {values['bits']}")


@dataclass(frozen=True)
class FinetuneConfig:
    """The settings of one fine-tuning run (see ``labkit.finetune.engine.finetune`` for what each does)."""

    method: str = "lora"
    name: str | None = None
    # LoRA
    rank: int = 8
    alpha: float | None = None  # default 2 x rank
    targets: Any = None  # None / 'all-linear': every linear layer but the head; or names, comma-separated
    dropout: float = 0.0
    lora: bool = False  # dpo / grpo / reward through LoRA adapters
    # the optimisation
    steps: int | None = None
    epochs: float | None = None  # default 1 when steps is not given
    lr: float | None = None  # default depends on the method
    batch: int = 8
    grad_accum: int = 1
    max_length: int = 256
    seed: int = 0
    warmup_steps: int = 0
    scheduler: str = "linear"
    gradient_checkpointing: bool = False
    bf16: bool = False
    # data
    skip_bad: bool = False
    data_format: str | None = None
    # saving
    resume: bool = False
    merge: bool = False
    save_every: int | None = None  # default: 4 checkpoints per run; 0: only at a stop
    keep_checkpoints: int = 2
    output_dir: str | os.PathLike | None = None
    # preference and RL methods
    beta: float = 0.1
    reward: Any = "arithmetic"
    num_generations: int = 4
    max_new_tokens: int = 16
    temperature: float = 1.0
    # qlora
    bits: int = 4
    # the view a caller builds (the engine draws nothing): earlier runs of the session drawn under this one
    overlay: bool = True

    def __post_init__(self):
        if self.method not in METHODS:
            raise LabkitUsageError(f"unknown method {self.method!r}; methods: {', '.join(METHODS)}")
        check_numbers(**{f.name: getattr(self, f.name) for f in fields(self) if f.name in _RULES})
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise LabkitUsageError(f"`dropout` = {self.dropout} makes no sense: use 0 <= dropout < 1")
        if self.steps is not None and self.epochs is not None:
            raise LabkitUsageError("give `steps` or `epochs`, not both")
        if self.method == "grpo" and self.batch % self.num_generations:
            g = self.num_generations
            raise LabkitUsageError(f"GRPO samples `num_generations`={g} replies per prompt: `batch` ({self.batch}) "
                                   f"must be a multiple of it (e.g. `batch` {g * max(1, self.batch // g)})")

    # -- derived settings
    @property
    def use_peft(self) -> bool:
        return self.method in PEFT_METHODS or (self.lora and self.method in ("dpo", "grpo", "reward"))

    @property
    def lora_alpha(self) -> float:
        return self.alpha if self.alpha is not None else 2 * self.rank

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        # adapters need a larger learning rate than full weights
        return DEFAULT_LR[self.method] * (10 if self.use_peft and self.method in ("dpo", "grpo", "reward") else 1)

    # -- making one
    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def make(cls, config: "FinetuneConfig | None" = None, **settings) -> "FinetuneConfig":
        """``config`` (or the defaults) with ``settings`` over it; an unknown setting is a TypeError, as for any
        Python function."""
        unknown = sorted(set(settings) - set(cls.names()))
        if unknown:
            raise TypeError(f"finetune() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                            f"settings: {', '.join(cls.names())}")
        if config is not None and not isinstance(config, cls):
            raise TypeError(f"config must be a FinetuneConfig, not {type(config).__name__}")
        base = config if config is not None else cls()
        return replace(base, **settings) if settings else base

    @classmethod
    def from_args(cls, args, **overrides) -> "FinetuneConfig":
        """From ``%%finetune``'s parsed options (``--out`` is the run's name, ``--generations`` its
        num_generations, ``--no-overlay`` turns overlay off); ``overrides`` win."""
        ns = vars(args)
        values = {k: ns[k] for k in cls.names() if k in ns}
        values.update(name=ns.get("out"), overlay=not ns.get("no_overlay", False))
        if "generations" in ns:
            values["num_generations"] = ns["generations"]
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
