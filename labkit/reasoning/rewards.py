"""The correctness reward for GRPO on the arithmetic chains (trl's reward API)."""
from __future__ import annotations

import re

from .problems import parse_answer


def completion_text(c) -> str:
    """trl passes completions as strings, or as ``[{"role": "assistant", "content": ...}]`` for chat prompts."""
    if isinstance(c, list):
        return " ".join(str(m.get("content", "")) for m in c if isinstance(m, dict))
    return str(c)


def correct_answer(completions, answer, **kwargs) -> list[float]:
    """1.0 when the completion's ``Answer:`` is the right number, else 0.0 (no partial credit: a chain of
    thought's *first* number is a partial sum, not the answer, so ``labkit.finetune.rewards.arithmetic`` would
    reward the wrong thing)."""
    return [1.0 if parse_answer(completion_text(c)) == int(a) else 0.0 for c, a in zip(completions, answer)]


def step_reward(completions, prompts, **kwargs) -> list[float]:
    """The share of a chain's steps that the rule-based process reward accepts (0 for a chain with more or fewer
    steps than the problem has operations): partial credit for every right step, a denser signal than
    ``correct_answer``. The problem is read back from the prompt (``C:3+5*2=``)."""
    from .problems import Problem, parse_steps, step_scores

    out = []
    for c, p in zip(completions, prompts):
        q = completion_text(p).split(":", 1)[-1].rstrip("=")
        nums, ops = [int(x) for x in re.split(r"[-+*]", q)], "".join(re.findall(r"[-+*]", q))
        prob = Problem(tuple(nums), ops)
        steps = parse_steps(completion_text(c))
        out.append(sum(step_scores(prob, steps)) / len(prob.ops) if len(steps) == len(prob.ops) else 0.0)
    return out
