"""Log-likelihood scoring with a causal LM, batched: the kit's reference for what lm-eval computes.

``continuation_logprobs(model, tokenizer, pairs)``: for each ``(context, continuation)`` the sum of the model's
log-probabilities of the continuation's tokens given the context, with lm-evaluation-harness's conventions
(the pair is tokenised whole and the context's tokens are cut off its front; no BOS is added; an empty context
is replaced by the ``<|endoftext|>`` token). ``sequence_nll`` scores a whole text after ``<|endoftext|>`` (the
harness's ``loglikelihood_rolling`` for texts shorter than the context window).
"""
from __future__ import annotations

EOT = "<|endoftext|>"


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of context and continuation, split as lm-eval splits them (trailing spaces of the context move
    to the continuation; the whole string is tokenised once, the context's ids are cut off its front)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"] if context else \
        [tokenizer.convert_tokens_to_ids(EOT)]
    if not context:
        return ctx, whole
    return ctx, whole[len(ctx):]


def score_ids(model, sequences: list[tuple[list[int], list[int]]], batch_size: int = 32) -> list[tuple[float, bool]]:
    """(sum of log-probs of the second part given the first, whether every token of it is the argmax)."""
    import torch

    out: list = [None] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][0]) - len(sequences[i][1]))
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        rows = [(sequences[i][0] + sequences[i][1])[:-1] for i in idx]
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, :len(r)] = torch.tensor(r)
            mask[j, :len(r)] = 1
        with torch.no_grad():
            logp = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        for j, i in enumerate(idx):
            ctx, cont = sequences[i]
            start = len(ctx) - 1
            pos = torch.arange(start, start + len(cont))
            tgt = torch.tensor(cont)
            lp = logp[j, pos, tgt]
            greedy = bool((logp[j, pos].argmax(-1) == tgt).all())
            out[i] = (float(lp.sum()), greedy)
    return out


def continuation_logprobs(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 32) -> list[float]:
    """Sum of log-probabilities of each continuation given its context (lm-eval's ``loglikelihood``)."""
    return [lp for lp, _ in score_ids(model, [encode_pair(tokenizer, c, x) for c, x in pairs], batch_size)]


def sequence_nll(model, tokenizer, texts: list[str], batch_size: int = 16) -> list[tuple[float, int]]:
    """Per text: (negative log-likelihood in nats of all its tokens after ``<|endoftext|>``, number of tokens)."""
    eot = tokenizer.convert_tokens_to_ids(EOT)
    seqs = [([eot], tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    scores = score_ids(model, seqs, batch_size)
    return [(-lp, len(s[1])) for (lp, _), s in zip(scores, seqs)]


def continuation_logprob(model, tokenizer, context: str, continuation: str) -> float:
    """One (context, continuation) pair: the kit's version of lab 11's exercise 2."""
    return continuation_logprobs(model, tokenizer, [(context, continuation)])[0]


def pick(logprobs: list[float], choices: list[str]) -> tuple[int, int]:
    """(index by total log-likelihood, index by log-likelihood per character of the option): lm-eval's acc and
    acc_norm (its ``acc_bytes`` divides by UTF-8 bytes instead)."""
    acc = max(range(len(logprobs)), key=lambda i: logprobs[i])
    norm = max(range(len(logprobs)), key=lambda i: logprobs[i] / len(choices[i]))
    return acc, norm


def text_nll(model, tokenizer, text: str) -> tuple[float, int]:
    """One text: the kit's version of lab 11's exercise 1 (``sequence_nll`` for one text)."""
    return sequence_nll(model, tokenizer, [text])[0]


def bits_per_byte(nll: float, text: str) -> float:
    import math

    return nll / len(text.encode("utf-8")) / math.log(2)
