"""Self-consistency: sample several chains, keep the answer most of them reach (Wang et al., 2022)."""
from __future__ import annotations

import random
from collections import Counter

from .problems import parse_answer


def majority_vote(answers):
    """The most common answer, ignoring None (a chain with no answer); ties go to the answer seen first.

    None when no chain gave an answer.
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


def self_consistency_curve(problems, samples, ns=(1, 3, 5, 9, 17), vote=majority_vote, subsets: int = 8,
                           seed: int = 0) -> dict:
    """Accuracy and mean tokens per problem of voting over ``n`` of the sampled chains, for each ``n`` in ``ns``.

    ``samples``: one list of ``Sample`` per problem (at least ``max(ns)`` each). Each ``n`` is averaged over
    ``subsets`` random draws of ``n`` chains out of the sampled ones (the same draws for every ``vote``), so
    the curve does not hinge on which chains came first. Returns ``{"n": [...], "accuracy": [...],
    "tokens": [...]}`` (tokens: generated tokens per problem, the test-time compute).
    """
    rng = random.Random(seed)
    out = {"n": [], "accuracy": [], "tokens": []}
    for n in ns:
        right, toks, count = 0, 0, 0
        for _ in range(subsets if n < len(samples[0]) else 1):
            for p, ss in zip(problems, samples):
                pick = rng.sample(range(len(ss)), n)
                right += vote([parse_answer(ss[i].text) for i in pick]) == p.answer
                toks += sum(ss[i].tokens for i in pick)
                count += 1
        out["n"].append(n)
        out["accuracy"].append(right / count)
        out["tokens"].append(toks / count)
    return out
