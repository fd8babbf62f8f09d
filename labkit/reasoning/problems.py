"""Multi-step "calculator" problems, their chain-of-thought and direct answers, and a rule-based step checker.

    >>> p = Problem((3, 5, 2, 4), "+*+")
    >>> p.prompt("cot"), p.cot(), p.direct()
    ('C:3+5*2+4=', '3+5=8, 8*2=16, 16+4=20. Answer: 20', 'Answer: 20')

A problem is a start digit and a few operations, applied **left to right like a pocket calculator** (each key acts
on the running result; no "times before plus"): ``+d`` and ``-d`` with a digit 1-9, ``*2`` and ``*3``. Every
running result stays within 0-99. Because the operations do not commute, the answer depends on their order: it
cannot be found by adding the digits up in any order (a sum of digits is easy for a transformer to do at once).
``C:`` asks for the chain of steps, ``D:`` for the answer only. About a tenth of all problems are *held out* (a
fixed hash of the text): the training data never contains them.
"""
from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass

MODES = {"cot": "C:", "direct": "D:"}
ANSWER = re.compile(r"Answer: (-?\d+)")
STEP = re.compile(r"^\s*(-?\d+)([-+*])(\d+)=(-?\d+)\s*$")


def apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


@dataclass(frozen=True)
class Problem:
    numbers: tuple
    ops: str = ""  # one of "+-*" per number after the first; "" means all "+"

    def __post_init__(self):
        if not self.ops:
            object.__setattr__(self, "ops", "+" * (len(self.numbers) - 1))
        if len(self.ops) != len(self.numbers) - 1 or set(self.ops) - set("+-*"):
            raise ValueError(f"{len(self.numbers)} numbers need {len(self.numbers) - 1} operations from '+-*'")

    @property
    def answer(self) -> int:
        return self.partial_sums()[-1] if len(self.numbers) > 1 else self.numbers[0]

    @property
    def terms(self) -> int:
        return len(self.numbers)

    def question(self) -> str:
        return str(self.numbers[0]) + "".join(f"{o}{n}" for o, n in zip(self.ops, self.numbers[1:]))

    def prompt(self, mode: str = "cot") -> str:
        return MODES[mode] + self.question() + "="

    def partial_sums(self) -> list[int]:
        """The running result after each operation."""
        out, s = [], self.numbers[0]
        for o, n in zip(self.ops, self.numbers[1:]):
            s = apply(s, o, n)
            out.append(s)
        return out

    def cot(self) -> str:
        """The worked chain: one step per operation, then the answer."""
        steps, s = [], self.numbers[0]
        for o, n in zip(self.ops, self.numbers[1:]):
            steps.append(f"{s}{o}{n}={apply(s, o, n)}")
            s = apply(s, o, n)
        return ", ".join(steps) + f". Answer: {s}"

    def direct(self) -> str:
        return f"Answer: {self.answer}"

    def completion(self, mode: str = "cot") -> str:
        return self.cot() if mode == "cot" else self.direct()


def is_heldout(problem) -> bool:
    """A fixed ~10 % of all problems, never used for training (the same on every machine)."""
    return zlib.crc32(problem.question().encode()) % 10 == 0


def random_problem(rng, terms: int, ops: str = "+-*") -> Problem:
    """A start digit 1-9 and ``terms - 1`` operations (from ``ops``), each keeping the running result within 0-99."""
    nums, chosen = [rng.randint(1, 9)], ""
    s = nums[0]
    for _ in range(terms - 1):
        while True:
            o = rng.choice("++-**") if ops == "+-*" else rng.choice(ops)
            b = rng.choice((2, 3)) if o == "*" else rng.randint(1, 9)
            if 0 <= apply(s, o, b) <= 99:
                break
        nums.append(b)
        chosen += o
        s = apply(s, o, b)
    return Problem(tuple(nums), chosen)


def make_problems(n: int, terms=(2, 5), seed: int = 0, split: str = "train", unique: bool = False,
                  ops: str = "+-*") -> list[Problem]:
    """``n`` problems with a number of terms drawn from ``terms`` (an int, a (lo, hi) range, or a list).

    ``split``: ``"train"`` (never a held-out problem), ``"heldout"`` (only held-out ones) or ``"any"``.
    ``unique``: no problem twice. ``ops="+"``: sums of digits only.
    """
    if isinstance(terms, int):
        choices = [terms]
    elif isinstance(terms, tuple) and len(terms) == 2:
        choices = list(range(terms[0], terms[1] + 1))
    else:
        choices = list(terms)
    rng = random.Random(seed)
    out, seen = [], set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 1000 * n + 10000:
            raise ValueError(f"cannot make {n} {'unique ' if unique else ''}{split} problems with {terms} terms")
        p = random_problem(rng, rng.choice(choices), ops)
        held = is_heldout(p)
        if (split == "train" and held) or (split == "heldout" and not held):
            continue
        if unique and p in seen:
            continue
        seen.add(p)
        out.append(p)
    return out


def parse_answer(text: str) -> int | None:
    """The number after ``Answer:`` (the first one), or None when the text has no answer."""
    m = ANSWER.search(text)
    return int(m.group(1)) if m else None


def parse_steps(text: str) -> list[str]:
    """The steps of a chain, before ``Answer:``: ``"3+5=8, 8+8=16."`` -> ``["3+5=8", "8+8=16"]``."""
    body = text.split("Answer:", 1)[0]
    return [s.strip() for s in re.split(r"[,.]", body) if s.strip()]


def step_scores(problem, steps) -> list[float]:
    """The reference rule-based process reward: 1.0 for each step that is right *and* on track, else 0.0.

    Step ``i`` must read ``a<op>b=c`` with ``a`` the true running result so far (the first number for step 0),
    ``<op>`` and ``b`` the problem's next operation and number, and ``c`` the result. A step after a wrong one
    is judged against the true running result (it is off track). Steps beyond the problem's operations score 0.
    """
    out, s = [], problem.numbers[0]
    for i, step in enumerate(steps):
        m = STEP.match(step)
        if m is None or i >= len(problem.ops):
            out.append(0.0)
            if i < len(problem.ops):
                s = apply(s, problem.ops[i], problem.numbers[i + 1])
            continue
        a, o, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        op, n = problem.ops[i], problem.numbers[i + 1]
        out.append(1.0 if (a == s and o == op and b == n and c == apply(a, o, b)) else 0.0)
        s = apply(s, op, n)
    return out
