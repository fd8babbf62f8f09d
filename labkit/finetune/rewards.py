"""Rule-based rewards for GRPO: functions ``f(completions, answer=[...], **columns) -> list[float]`` (trl's API)."""
from __future__ import annotations

import re

_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def completion_text(c) -> str:
    """trl passes completions as strings (text prompts) or as ``[{"role": "assistant", "content": ...}]``."""
    if isinstance(c, list):
        return " ".join(str(m.get("content", "")) for m in c if isinstance(m, dict))
    return str(c)


def first_number(text: str) -> float | None:
    m = _NUM.search(text.replace(",", ""))
    return float(m.group()) if m else None


def arithmetic(completions, answer, **kwargs) -> list[float]:
    """1 for the right number; partial credit for a number close to it; 0 for no number at all.

    The partial credit (``0.5 * (1 - relative error)``) gives a tiny model a slope to climb: an exact-match reward
    alone is almost always 0 at the start, so every completion of a prompt scores the same and GRPO's
    group-relative advantage is 0 (nothing is learned).
    """
    out = []
    for c, a in zip(completions, answer):
        pred, target = first_number(completion_text(c)), first_number(str(a))
        if pred is None or target is None:
            out.append(0.0)
        elif pred == target:
            out.append(1.0)
        else:
            rel = abs(pred - target) / max(1.0, abs(target))
            out.append(0.5 * max(0.0, 1.0 - rel))
    return out


def exact(completions, answer, **kwargs) -> list[float]:
    """1 when the reply (stripped, case-insensitive) contains the answer, else 0."""
    return [1.0 if str(a).strip().lower() in completion_text(c).lower() else 0.0 for c, a in zip(completions, answer)]


def brevity(completions, **kwargs) -> list[float]:
    """Shorter replies score higher (1 for empty, 0 for 200+ characters): a reward that is easy to hack."""
    return [max(0.0, 1.0 - len(completion_text(c)) / 200) for c in completions]


BUILTIN = {"arithmetic": arithmetic, "exact": exact, "brevity": brevity}


def get(reward) -> list:
    """A reward name, a callable, or a list of them -> a list of callables."""
    from ..errors import LabkitUsageError

    items = reward if isinstance(reward, (list, tuple)) else [reward]
    out = []
    for r in items:
        if callable(r):
            out.append(r)
        elif isinstance(r, str) and r in BUILTIN:
            out.append(BUILTIN[r])
        else:
            raise LabkitUsageError(f"unknown reward {r!r}; built-in rewards: {', '.join(BUILTIN)}, or pass a "
                                   f"function f(completions, **columns) -> list of floats")
    return out
