"""LLM-as-judge with a zoo model: three ways to ask, their agreement with the truth, and position bias.

- ``pairwise``: the judge sees both answers (``Answer A`` / ``Answer B``) and we compare its log-probability of
  replying ``A`` or ``B``; run twice with the order swapped, it shows whether the verdict follows the content or
  the position.
- ``yes_no``: the judge sees one answer and we compare its log-probability of ``yes`` and ``no``.
- ``likelihood``: no question to the judge at all: the log-probability that the judge, asked the question, would
  reply with this answer (what a reader model is good at).

Items are the benchmark's reading questions (``zoo_mc``): a passage, a question, the right option and a wrong one
(the passage's distractor where it has one).
"""
from __future__ import annotations

from dataclasses import dataclass

from .scoring import continuation_logprobs


@dataclass
class JudgeItem:
    context: str
    question: str
    right: str
    wrong: str


def items(n: int = 40) -> list[JudgeItem]:
    from .benchmark import load_items

    out = []
    for it in load_items():
        if it["part"] != "reading":
            continue
        head, _, rest = it["question"].partition("\nQuestion: ")
        right = it["choices"][it["answer"]]
        wrong = [c for c in it["choices"] if c != right][0]
        # prefer the passage's own distractor (the hard negative) when one of the options occurs in it
        in_ctx = [c for c in it["choices"] if c != right and c in head]
        out.append(JudgeItem(head[len("Context: "):], rest.rsplit("\nAnswer:", 1)[0], right, (in_ctx or [wrong])[0]))
    return out[:n]


def _chat(text: str) -> str:
    from labkit.zoo import formats as F

    return F.format_chat([{"role": "user", "content": text}])


def pairwise_prompt(it: JudgeItem, first: str, second: str) -> str:
    return _chat(f"Context: {it.context}\nQuestion: {it.question}\nAnswer A: {first}\nAnswer B: {second}\n"
                 f"Which answer is correct, A or B?")


def yes_no_prompt(it: JudgeItem, answer: str) -> str:
    return _chat(f"Context: {it.context}\nQuestion: {it.question}\nProposed answer: {answer}\n"
                 f"Is the proposed answer correct? Answer yes or no.")


def answer_prompt(it: JudgeItem) -> str:
    return _chat(f"Context: {it.context}\nQuestion: {it.question}")


def pairwise_margins(model, tokenizer, its: list[JudgeItem]) -> tuple[list[float], list[float]]:
    """log p(A) - log p(B): with the right answer shown first, and with it shown second."""
    pairs = []
    for it in its:
        for first, second in ((it.right, it.wrong), (it.wrong, it.right)):
            p = pairwise_prompt(it, first, second)
            pairs += [(p, " A"), (p, " B")]
    lp = continuation_logprobs(model, tokenizer, pairs)
    m = [lp[i] - lp[i + 1] for i in range(0, len(lp), 2)]
    return m[0::2], m[1::2]


def yes_no_margins(model, tokenizer, its: list[JudgeItem]) -> tuple[list[float], list[float]]:
    """log p(yes) - log p(no) for the right answer and for the wrong one."""
    pairs = []
    for it in its:
        for ans in (it.right, it.wrong):
            p = yes_no_prompt(it, ans)
            pairs += [(p, " yes"), (p, " no")]
    lp = continuation_logprobs(model, tokenizer, pairs)
    m = [lp[i] - lp[i + 1] for i in range(0, len(lp), 2)]
    return m[0::2], m[1::2]


def likelihoods(model, tokenizer, its: list[JudgeItem]) -> tuple[list[float], list[float]]:
    """log p(answer | the question as a chat) for the right and the wrong answer."""
    pairs = []
    for it in its:
        p = answer_prompt(it)
        pairs += [(p, " " + it.right), (p, " " + it.wrong)]
    lp = continuation_logprobs(model, tokenizer, pairs)
    return lp[0::2], lp[1::2]
