"""Perplexity done right: per token vs per byte.

A perplexity is ``exp(mean negative log-likelihood per unit)``; the unit is the tokenizer's token, so two models
with different tokenizers divide the *same* text's log-likelihood by different counts. Bits per byte divides by
the text's UTF-8 bytes instead, which every tokenizer agrees on.

``unigram_table`` fits the simplest language model (add-k unigram) under any tokenizer, so the same text can be
scored by three tokenisations: raw bytes (256 symbols), the zoo's 4k BPE, GPT-4's 100k cl100k.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass


def byte_tokens(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def tokenizers() -> dict:
    """name -> (encode function text -> list of ids, vocabulary size)."""
    from labkit import models as M

    tiny = M.load_tokenizer("tiny")
    cl = M.load_tokenizer("cl100k")
    return {
        "bytes (256)": (byte_tokens, 256),
        "zoo BPE (4k)": (lambda t: tiny(t, add_special_tokens=False)["input_ids"], len(tiny)),
        "cl100k (100k)": (lambda t: cl.encode(t, disallowed_special=()), cl.n_vocab),
    }


@dataclass
class UnigramScore:
    tokenizer: str
    nll: float          # nats, the whole held-out text
    tokens: int
    bytes: int

    @property
    def token_perplexity(self) -> float:
        return math.exp(self.nll / self.tokens)

    @property
    def bits_per_byte(self) -> float:
        return self.nll / self.bytes / math.log(2)


def unigram_scores(train_texts: list[str], test_texts: list[str], k: float = 0.1) -> list[UnigramScore]:
    """An add-k unigram model per tokenizer, fitted on ``train_texts``, scored on ``test_texts``."""
    out = []
    n_bytes = sum(len(t.encode("utf-8")) for t in test_texts)
    for name, (enc, V) in tokenizers().items():
        counts = Counter(i for t in train_texts for i in enc(t))
        total = sum(counts.values())
        test_ids = [i for t in test_texts for i in enc(t)]
        nll = -sum(math.log((counts[i] + k) / (total + k * V)) for i in test_ids)
        out.append(UnigramScore(name, nll, len(test_ids), n_bytes))
    return out


def train_texts(n: int = 3000) -> list[str]:
    """Training documents of the same kinds as the held-out ones (stories and context-QA texts)."""
    import itertools

    from labkit.zoo.corpus import Corpus

    stream = Corpus(0).pretrain_docs("train", mix={"story": 0.7, "qa_text": 0.3})
    return [d.replace("<|endoftext|>", "").strip() for d in itertools.islice(stream, n)]
