"""Word n-gram language models for lab 02: counts, ``<UNK>``, perplexity, sampling, and the nltk references.

    >>> from labkit.classic import ngram as G
    >>> train = G.stories("train", 2000)                    # the zoo world's stories, as lists of words
    >>> counts = G.NgramCounts(train, order=3, cutoff=2)     # words seen once become <UNK>
    >>> counts.count(("the", "old", "bridge")), counts.context_total(("the", "old"))
    >>> G.eval_ngrams(G.stories("val", 50), counts)          # the n-grams a held-out text is scored on

The counting follows ``nltk.lm`` exactly, so that a smoothing written on these counts and nltk's agree number for
number: each training sequence is padded with ``order - 1`` ``<s>`` on the left and ``order - 1`` ``</s>`` on the
right (``nltk.lm.preprocessing.pad_both_ends``), every k-gram for k = 1..order is counted (``everygrams``), the
vocabulary is built from the padded text (so ``<s>``, ``</s>`` and ``<UNK>`` count as words, as in
``nltk.lm.Vocabulary``), and a word seen fewer than ``cutoff`` times is read as ``<UNK>`` everywhere.

A held-out sequence is scored on one n-gram per word plus one for the end (left-padded, one ``</s>``): every real
word and the end of the story are predicted exactly once (``eval_ngrams``).

The smoothing itself (add-k, Kneser-Ney) is the learner's to write in the lab; this module holds the counts they
read and the independent references their functions are checked against (``nltk.lm.Lidstone``,
``nltk.lm.KneserNeyInterpolated``). At scale, KenLM (modified Kneser-Ney, estimated on disk, queried in C++) is what
is used instead.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter
from typing import Callable, Iterable, Sequence

from ..errors import LabkitUsageError

BOS, EOS, UNK = "<s>", "</s>", "<UNK>"
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+|[^\sa-z0-9]")


# ------------------------------------------------------------------------------------------------ text
def words(text: str) -> list[str]:
    """Lower-cased words, with each punctuation mark a word of its own ("Kai's lamp!" -> kai's, lamp, !)."""
    return _TOKEN.findall(text.lower())


def stories(split: str = "train", n: int = 1000, seed: int = 0) -> list[list[str]]:
    """``n`` stories of the zoo's synthetic world (``labkit.zoo.corpus``), each a list of words. The splits
    (``train``, ``val``, ``test``) hold different stories; the same arguments give the same stories."""
    from ..zoo.corpus import Corpus
    from ..zoo.formats import EOT

    if split not in ("train", "val", "test"):
        raise LabkitUsageError(f"split must be 'train', 'val' or 'test', not {split!r}")
    if n < 0:
        raise LabkitUsageError(f"n must be 0 or more, not {n}")
    docs = Corpus(seed).pretrain_docs(split, mix={"story": 1})
    return [words(next(docs).replace(EOT, "")) for _ in range(n)]


def pad(tokens: Sequence[str], order: int) -> list[str]:
    """``order - 1`` ``<s>`` before and ``</s>`` after (nltk's ``pad_both_ends``)."""
    return [BOS] * (order - 1) + list(tokens) + [EOS] * (order - 1)


# ------------------------------------------------------------------------------------------------ vocabulary
class Vocab:
    """The words a model knows: those seen at least ``cutoff`` times in the (padded) training text, plus ``<UNK>``
    (``nltk.lm.Vocabulary``'s rule). ``lookup`` maps any other word to ``<UNK>``."""

    def __init__(self, counts: Counter, cutoff: int = 1):
        if cutoff < 1:
            raise LabkitUsageError(f"cutoff must be 1 or more (a word seen that many times is known), not {cutoff}")
        self.counts, self.cutoff = counts, cutoff
        self.words = sorted(w for w, c in counts.items() if c >= cutoff) + [UNK]
        self._known = set(self.words)

    def __contains__(self, word) -> bool:
        return word in self._known

    def __len__(self) -> int:
        return len(self.words)

    def __iter__(self):
        return iter(self.words)

    def lookup(self, word: str) -> str:
        return word if word in self._known else UNK

    def __repr__(self):
        return f"Vocab({len(self):,} words incl. <s>, </s>, <UNK>; cutoff {self.cutoff})"


# ------------------------------------------------------------------------------------------------ counts
class NgramCounts:
    """Every k-gram (k = 1..``order``) of the padded training sequences, and the tallies smoothing reads.

    ``count(g)``                 c(g): how often the tuple ``g`` occurs
    ``context_total(h)``         c(h ·): how often ``h`` occurs *followed by a word* (the sum of c(h w) over w);
                                 for ``h = ()``, the number of tokens (padding included)
    ``followers(h)``             N1+(h ·): how many *different* words follow ``h``
    ``continuations(g)``         N1+(· g): how many different words come *before* ``g``
    ``continuation_total(h)``    N1+(· h ·): how many different (v, h, w) triples there are around ``h``
    ``vocab``, ``V``             the vocabulary (``<s>``, ``</s>``, ``<UNK>`` included) and its size
    """

    def __init__(self, sequences: Iterable[Sequence[str]], order: int = 3, cutoff: int = 1):
        if not isinstance(order, int) or not 1 <= order <= 6:
            raise LabkitUsageError(f"order must be an integer from 1 to 6, not {order!r}")
        seqs = [list(s) for s in sequences]
        if not seqs or not any(seqs):
            raise LabkitUsageError("give at least one non-empty training sequence (a list of words)")
        self.order = order
        self.vocab = Vocab(Counter(w for s in seqs for w in pad(s, order)), cutoff)
        self.V = len(self.vocab)
        self.ngrams: dict[int, Counter] = {k: Counter() for k in range(1, order + 1)}
        self.n_sequences = len(seqs)
        for s in seqs:
            toks = [self.vocab.lookup(w) for w in pad(s, order)]
            for k in range(1, order + 1):
                table = self.ngrams[k]
                for i in range(len(toks) - k + 1):
                    table[tuple(toks[i:i + k])] += 1
        self._total, self._followers = Counter(), Counter()
        self._before, self._around = Counter(), Counter()
        self._total[()] = sum(self.ngrams[1].values())
        self._followers[()] = len(self.ngrams[1])
        for k in range(2, order + 1):
            for g, c in self.ngrams[k].items():
                self._total[g[:-1]] += c
                self._followers[g[:-1]] += 1
                self._before[g[1:]] += 1
                self._around[g[1:-1]] += 1

    def count(self, ngram: Sequence[str]) -> int:
        g = tuple(ngram)
        return self.ngrams[len(g)][g] if 1 <= len(g) <= self.order else 0

    def context_total(self, context: Sequence[str]) -> int:
        return self._total[tuple(context)]

    def followers(self, context: Sequence[str]) -> int:
        return self._followers[tuple(context)]

    def continuations(self, ngram: Sequence[str]) -> int:
        return self._before[tuple(ngram)]

    def continuation_total(self, context: Sequence[str]) -> int:
        return self._around[tuple(context)]

    def lookup(self, words_: Sequence[str]) -> tuple[str, ...]:
        return tuple(self.vocab.lookup(w) for w in words_)

    def __repr__(self):
        kinds = ", ".join(f"{len(self.ngrams[k]):,} distinct {k}-grams" for k in self.ngrams)
        return (f"NgramCounts(order {self.order}, {self.n_sequences:,} sequences, {self._total[()]:,} tokens, "
                f"V = {self.V:,}; {kinds})")


def eval_ngrams(sequences: Iterable[Sequence[str]], counts: NgramCounts | None = None, order: int | None = None
                ) -> list[tuple[str, ...]]:
    """The n-grams a held-out text is scored on: for each word of each sequence, and for its end (``</s>``), the
    ``order``-gram that ends there (``order - 1`` ``<s>`` on the left). With ``counts``, words outside its
    vocabulary become ``<UNK>`` and ``order`` is its order."""
    order = order or (counts.order if counts is not None else None)
    if not order:
        raise LabkitUsageError("give counts= (a NgramCounts) or order=")
    out = []
    for s in sequences:
        toks = [BOS] * (order - 1) + list(s) + [EOS]
        if counts is not None:
            toks = [counts.vocab.lookup(w) for w in toks]
        out += [tuple(toks[i - order + 1:i + 1]) for i in range(order - 1, len(toks))]
    return out


def perplexity_of(prob: Callable[[str, tuple], float], ngrams: Sequence[tuple]) -> float:
    """exp of the mean negative log-probability ``prob(word, context)`` gives each n-gram's last word; ``inf`` when
    any of them gets probability 0 (the kit's own, for plumbing; the lab's learner writes theirs)."""
    total = 0.0
    for g in ngrams:
        p = prob(g[-1], g[:-1])
        if p <= 0:
            return math.inf
        total -= math.log(p)
    return math.exp(total / max(1, len(ngrams)))


def mle_prob(counts: NgramCounts) -> Callable[[str, tuple], float]:
    """The unsmoothed estimate c(h w) / c(h ·) (0 for an unseen context): what smoothing repairs."""
    def prob(word, context):
        total = counts.context_total(context)
        return counts.count(tuple(context) + (word,)) / total if total else 0.0
    return prob


def sample(prob: Callable[[str, tuple], float], counts: NgramCounts, n_words: int = 25, seed: int = 0,
           start: Sequence[str] = ()) -> list[str]:
    """Words drawn one at a time from ``prob(word, context)`` over the vocabulary (never ``<s>``, ``<UNK>``),
    stopping at ``</s>``."""
    rng = random.Random(seed)
    choices = [w for w in counts.vocab if w not in (BOS, UNK)]
    hist = [BOS] * (counts.order - 1) + [counts.vocab.lookup(w) for w in start]
    out = list(start)
    for _ in range(n_words):
        context = tuple(hist[len(hist) - counts.order + 1:]) if counts.order > 1 else ()
        weights = [max(0.0, float(prob(w, context))) for w in choices]
        if not sum(weights) > 0:
            break
        w = rng.choices(choices, weights)[0]
        if w == EOS:
            break
        out.append(w)
        hist.append(w)
    return out


def good_turing_unseen(counts: NgramCounts, k: int) -> float:
    """Good-Turing's estimate of the probability that the next k-gram is one never seen: N1 / N (the share of
    k-gram tokens whose type was seen exactly once)."""
    table = counts.ngrams[k]
    n = sum(table.values())
    return sum(1 for c in table.values() if c == 1) / n if n else 0.0


# ------------------------------------------------------------------------------------------------ the kit's smoothing
# What lab 02 falls back on until the learner has written theirs (``labkit.exercises.yours``); the learner's are
# checked against nltk, not against these. tests/test_classic_lms.py holds these to nltk too.
def addk_prob(counts: NgramCounts, word: str, context: Sequence[str], k: float) -> float:
    """Add-k (Lidstone; Laplace for k = 1): (c(h w) + k) / (c(h ·) + k V)."""
    return (counts.count(tuple(context) + (word,)) + k) / (counts.context_total(context) + k * counts.V)


def kneser_ney_prob(counts: NgramCounts, word: str, context: Sequence[str], d: float) -> float:
    """Interpolated Kneser-Ney with nltk's conventions (see ``agrees_with_nltk_kneser_ney``)."""
    context = tuple(context)
    if not context:
        return counts.continuations((word,)) / counts.continuation_total(())
    lower = kneser_ney_prob(counts, word, context[1:], d)
    if counts.context_total(context) == 0:  # an unseen context: all its mass goes to the lower order
        return lower
    if len(context) + 1 == counts.order:  # the highest order reads raw counts
        num, den = counts.count(context + (word,)), counts.context_total(context)
    else:  # lower orders read continuation counts: in how many contexts was this seen?
        num, den = counts.continuations(context + (word,)), counts.continuation_total(context)
    return max(num - d, 0.0) / den + d * counts.followers(context) / den * lower


# ------------------------------------------------------------------------------------------------ nltk references
def nltk_model(kind: str, sequences: Iterable[Sequence[str]], order: int, cutoff: int = 1, **params):
    """An ``nltk.lm`` model fitted on ``sequences`` with the conventions above: ``kind`` is ``"mle"``,
    ``"laplace"``, ``"lidstone"`` (``gamma=k``) or ``"kneser-ney"`` (``discount=d``: nltk's default is 0.1, the
    usual choice 0.75: always pass it)."""
    from nltk.lm import MLE, KneserNeyInterpolated, Laplace, Lidstone, Vocabulary
    from nltk.lm.preprocessing import padded_everygram_pipeline

    vocab = Vocabulary(unk_cutoff=cutoff)
    make = {"mle": lambda: MLE(order, vocabulary=vocab),
            "laplace": lambda: Laplace(order, vocabulary=vocab),
            "lidstone": lambda: Lidstone(params["gamma"], order, vocabulary=vocab),
            "kneser-ney": lambda: KneserNeyInterpolated(order, discount=params["discount"], vocabulary=vocab)}
    if kind not in make:
        raise LabkitUsageError(f"kind must be one of {', '.join(make)}, not {kind!r}")
    lm = make[kind]()
    grams, text = padded_everygram_pipeline(order, [list(s) for s in sequences])
    lm.fit(grams, text)
    return lm


def _random_corpus(rng: random.Random, n_seqs: int, alphabet: str) -> list[list[str]]:
    return [[rng.choice(alphabet) for _ in range(rng.randint(1, 9))] for _ in range(n_seqs)]


def _probe_ngrams(counts: NgramCounts, held: Sequence[Sequence[str]], rng: random.Random, n_random: int = 40):
    """Held-out n-grams, plus random (context, word) pairs over the vocabulary: unseen contexts and unseen words
    after a seen context included."""
    grams = eval_ngrams(held, counts)
    words_ = [w for w in counts.vocab if w != BOS]
    for _ in range(n_random):
        grams.append(tuple(rng.choice(words_) for _ in range(counts.order)))
    return list(dict.fromkeys(grams))


def _close(a, b, tol=1e-9) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)
    except (TypeError, ValueError):
        return False


def _agrees(fn, kind: str, values, cases, seed: int) -> bool:
    from nltk.lm import KneserNeyInterpolated, Lidstone

    rng = random.Random(seed)
    for train, held, order, cutoff in cases:
        counts = NgramCounts(train, order, cutoff)
        probe = _probe_ngrams(counts, held, rng)
        fitted = nltk_model("mle", train, order, cutoff)  # counted once; each model below reads the same counts
        for value in values:
            lm = (Lidstone(value, order, vocabulary=fitted.vocab, counter=fitted.counts) if kind == "lidstone" else
                  KneserNeyInterpolated(order, discount=value, vocabulary=fitted.vocab, counter=fitted.counts))
            for g in probe:
                want = lm.score(g[-1], g[:-1] or None)
                try:
                    got = fn(counts, g[-1], g[:-1], value)
                except Exception:  # noqa: BLE001 - a learner's bug is a wrong answer, not a crash
                    return False
                if not _close(got, want):
                    return False
    return True


def _cases(train, held, orders, cutoff, seed, n_random):
    rng = random.Random(seed)
    cases = [(train, held, order, cutoff) for order in orders if train]
    for i in range(n_random):  # small corpora the lab never showed
        alphabet = "abcde" if i % 2 else "abcdefghij"
        cases.append((_random_corpus(rng, 12, alphabet), _random_corpus(rng, 3, alphabet + "xyz"),
                      orders[i % len(orders)], 1 + i % 2))
    return cases


def agrees_with_nltk_lidstone(fn, train=(), held=(), orders=(1, 2, 3), ks=(1.0, 0.1), cutoff: int = 1,
                              seed: int = 20, n_random: int = 6) -> bool:
    """Does ``fn(counts, word, context, k)`` give ``nltk.lm.Lidstone(k)`` 's score (``Laplace`` for k = 1) for every
    probed n-gram, on ``train``/``held`` at each order and on small random corpora the learner never saw?"""
    return _agrees(fn, "lidstone", ks, _cases(train, held, orders, cutoff, seed, n_random), seed)


def agrees_with_nltk_kneser_ney(fn, train=(), held=(), orders=(2, 3), discounts=(0.75, 0.3), cutoff: int = 1,
                                seed: int = 21, n_random: int = 6) -> bool:
    """Does ``fn(counts, word, context, d)`` give ``nltk.lm.KneserNeyInterpolated(order, discount=d)`` 's score?

    Compared where both are defined: orders 2 and up (nltk's order-1 Kneser-Ney divides by zero: it reads its
    unigrams from bigram continuations it did not count) and words of the vocabulary. nltk's conventions, which the
    lab's exercise states: the lowest order is the continuation unigram N1+(· w) / N1+(· ·) with no uniform floor
    (Chen & Goodman's version adds one, so that a word never seen after another still gets mass); the weight of the
    lower order is d · N1+(h ·) / (this order's denominator), N1+(h ·) counted on raw counts at every order; and an
    unseen context hands all its mass to the lower order."""
    return _agrees(fn, "kneser-ney", discounts, _cases(train, held, orders, cutoff, seed, n_random), seed)
