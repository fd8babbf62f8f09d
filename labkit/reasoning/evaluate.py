"""Accuracy of the arithmetic model on held-out problems, by mode and number of terms."""
from __future__ import annotations

from .problems import make_problems, parse_answer
from .sampling import complete


def accuracy(model, tok, problems, mode: str = "cot", max_new_tokens: int = 80) -> float:
    """Share of ``problems`` whose greedy completion in ``mode`` ends with the right ``Answer:``."""
    outs = complete(model, tok, [p.prompt(mode) for p in problems], max_new_tokens=max_new_tokens)
    return sum(parse_answer(o[0].text) == p.answer for o, p in zip(outs, problems)) / len(problems)


def accuracy_table(model, tok, terms=(2, 3, 4, 5, 6, 7, 8), n: int = 60, seed: int = 1) -> dict:
    """{"cot": {terms: accuracy}, "direct": {...}} on ``n`` unique held-out problems per number of terms."""
    table = {"cot": {}, "direct": {}}
    for k in terms:
        probs = make_problems(n, terms=k, seed=seed + k, split="heldout", unique=k > 2)
        for mode in table:
            table[mode][k] = accuracy(model, tok, probs, mode)
    return table
