"""Embeddings for lab 04: skip-gram word vectors trained live, contextual vectors from MiniLM, similarity
metrics, analogies, a 2-D projection and a small semantic search.

    >>> from labkit import embeddings as E
    >>> wv = E.train_skipgram(E.corpus_texts())        # a few seconds on 2 cores
    >>> wv.most_similar("baker")                       # [('farmer', 0.83), ...]
    >>> wv.analogy("she", "her", "he")                 # she : her :: he : ?
    >>> E.contextual_vector("bank", "We sat on the bank of the river.")
    >>> index = E.SearchIndex(sentences); index.search("Who has a parrot?")

Skip-gram with negative sampling (Mikolov et al., 2013) is written out here on purpose, in ~40 lines of PyTorch:
it is the idea the lab teaches. At scale use gensim's ``Word2Vec`` or fastText, and sentence-transformers for
sentence embeddings (which :class:`SearchIndex` does).
"""
from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .errors import LabkitUsageError

WORD = re.compile(r"[a-z]+")


def words(text: str) -> list[str]:
    """Lower-case words (letters only): the unit of a static word embedding."""
    return WORD.findall(text.lower())


def corpus_texts(n_docs: int = 4000, seed: int = 0) -> list[str]:
    """Stories and encyclopedia entries of the zoo's synthetic world (no chat, no arithmetic)."""
    import random

    from .zoo.corpus import Corpus, facts_of

    c = Corpus(seed)
    r = random.Random(seed)
    texts = [" ".join(facts_of(e)) for e in c._people + c._towns]
    texts += [c.story(r) for _ in range(max(0, n_docs - len(texts)))]
    return texts


# ------------------------------------------------------------------------------------------------ metrics
def cosine(u, v) -> float:
    """cos θ = u·v / (|u| |v|): direction only, in [-1, 1]."""
    import numpy as np

    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-12))


def dot(u, v) -> float:
    """u·v: direction and length (frequent words often have longer vectors)."""
    import numpy as np

    return float(np.asarray(u, dtype=np.float64) @ np.asarray(v, dtype=np.float64))


def euclidean(u, v) -> float:
    """|u - v|: a distance (smaller = closer). On unit vectors, |u-v|² = 2 - 2 cos θ."""
    import numpy as np

    return float(np.linalg.norm(np.asarray(u, dtype=np.float64) - np.asarray(v, dtype=np.float64)))


METRICS = {"cosine": cosine, "dot": dot, "euclidean": euclidean}


# ------------------------------------------------------------------------------------------------ static vectors
@dataclass
class StaticEmbeddings:
    """One vector per word, whatever its context."""

    words: list[str]
    vectors: Any = field(repr=False)  # numpy (V, dim)
    counts: list[int] = field(repr=False)
    losses: list[float] = field(repr=False)
    seconds: float = 0.0
    pairs: int = 0

    def __post_init__(self):
        import numpy as np

        self.index = {w: i for i, w in enumerate(self.words)}
        self.unit = self.vectors / (np.linalg.norm(self.vectors, axis=1, keepdims=True) + 1e-12)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def vector(self, word: str):
        key = str(word).lower()
        if key not in self.index:
            close = [w for w in self.words if w.startswith(key[:3])][:8]
            raise LabkitUsageError(f"{word!r} is not in the vocabulary ({len(self.words):,} words that occur at least "
                                   f"min_count times)" + (f"; similar spellings: {', '.join(close)}" if close else ""))
        return self.vectors[self.index[key]]

    def similarity(self, a: str, b: str, metric: str = "cosine") -> float:
        if metric not in METRICS:
            raise LabkitUsageError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
        return METRICS[metric](self.vector(a), self.vector(b))

    def most_similar(self, query, k: int = 8, exclude: Sequence[str] = ()) -> list[tuple[str, float]]:
        """Nearest words by cosine to a word or a vector."""
        import numpy as np

        if isinstance(query, str):
            exclude = set(exclude) | {query.lower()}
            query = self.vector(query)
        q = np.asarray(query, dtype=np.float64)
        q = q / (np.linalg.norm(q) + 1e-12)
        sims = self.unit @ q
        out = []
        for i in np.argsort(-sims):
            if self.words[i] not in exclude:
                out.append((self.words[i], round(float(sims[i]), 4)))
            if len(out) == k:
                break
        return out

    def analogy(self, a: str, b: str, c: str, k: int = 5) -> list[tuple[str, float]]:
        """a is to b as c is to ?  — the words nearest to b - a + c (a, b, c themselves excluded)."""
        v = self.unit[self.index[b.lower()]] - self.unit[self.index[a.lower()]] + self.unit[self.index[c.lower()]] \
            if all(w.lower() in self.index for w in (a, b, c)) else self.vector(b) - self.vector(a) + self.vector(c)
        return self.most_similar(v, k, exclude=(a.lower(), b.lower(), c.lower()))

    def project(self, word_list: Sequence[str]):
        """2-D coordinates of these words: PCA (the two directions of largest variance) of their unit vectors."""
        import numpy as np

        X = np.stack([self.unit[self.index[w.lower()]] if w.lower() in self.index else self.vector(w) for w in word_list])
        X = X - X.mean(axis=0)
        _, _, vt = np.linalg.svd(X, full_matrices=False)
        return X @ vt[:2].T

    def __repr__(self):
        return (f"StaticEmbeddings({len(self.words):,} words × {self.dim} dims, trained on {self.pairs:,} "
                f"(word, context) pairs in {self.seconds:.1f} s; loss {self.losses[0]:.3f} → {self.losses[-1]:.3f})")


def train_skipgram(texts: Iterable[str], *, dim: int = 48, window: int = 3, negatives: int = 5, epochs: int = 3,
                   min_count: int = 5, batch_size: int = 4096, lr: float = 0.02, subsample: float = 1e-3,
                   seed: int = 0, loss_fn=None) -> StaticEmbeddings:
    """Skip-gram with negative sampling: learn vectors so that a word predicts the words around it.

    For each (center, context) pair within ``window`` words, push σ(center·context) up and σ(center·noise) down for
    ``negatives`` noise words drawn from the unigram distribution to the power 3/4. Frequent words are
    subsampled (``subsample``), as in word2vec. ``loss_fn(center, context, noise)`` (shapes ``(B, dim)``,
    ``(B, dim)``, ``(B, negatives, dim)`` -> a scalar tensor) replaces the loss: lab 04's learner trains with theirs.
    """
    import numpy as np
    import torch

    from .runtime import configure_torch

    configure_torch()
    if not 2 <= dim <= 1024 or window < 1 or negatives < 1 or epochs < 1:
        raise LabkitUsageError("need dim in 2..1024 and window, negatives, epochs ≥ 1")
    t0 = time.perf_counter()
    docs = [words(t) for t in texts]
    counts = Counter(w for d in docs for w in d)
    vocab = [w for w, c in counts.most_common() if c >= min_count]
    if len(vocab) < 2:
        raise LabkitUsageError(f"the texts have fewer than 2 words that occur {min_count}+ times; give more text "
                               f"or a lower min_count")
    index = {w: i for i, w in enumerate(vocab)}
    freq = np.array([counts[w] for w in vocab], dtype=np.float64)
    total = freq.sum()
    rng = np.random.default_rng(seed)
    keep_p = np.minimum(1.0, np.sqrt(subsample * total / freq) + subsample * total / freq)
    centers, contexts = [], []
    for d in docs:
        ids = np.array([index[w] for w in d if w in index], dtype=np.int64)
        if len(ids) < 2:
            continue
        ids = ids[rng.random(len(ids)) < keep_p[ids]]  # drop some "the", "a", "to"
        for off in range(1, window + 1):
            if len(ids) > off:
                centers += [ids[:-off], ids[off:]]
                contexts += [ids[off:], ids[:-off]]
    centers_t = torch.from_numpy(np.concatenate(centers))
    contexts_t = torch.from_numpy(np.concatenate(contexts))
    # word2vec's unigram table: noise words drawn by indexing a table where word w fills a share ∝ count^0.75
    share = freq ** 0.75 / (freq ** 0.75).sum()
    noise_table = torch.from_numpy(np.repeat(np.arange(len(vocab)), np.maximum(1, np.round(share * 100_000).astype(int))))
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    V = len(vocab)
    center_emb = torch.nn.Embedding(V, dim)
    context_emb = torch.nn.Embedding(V, dim)
    torch.nn.init.uniform_(center_emb.weight, -0.5 / dim, 0.5 / dim)
    torch.nn.init.zeros_(context_emb.weight)
    opt = torch.optim.Adam(list(center_emb.parameters()) + list(context_emb.parameters()), lr=lr)
    n = len(centers_t)
    if loss_fn is not None and not callable(loss_fn):
        raise LabkitUsageError(f"loss_fn must be a function (center, context, noise) -> loss, not {type(loss_fn).__name__}")
    losses = []
    # the model is tiny (vocabulary × dim × 2): one thread avoids synchronisation costs larger than the matmuls
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        losses = _sgns_epochs(epochs, n, batch_size, g, center_emb, context_emb, centers_t, contexts_t, noise_table,
                              negatives, opt, loss_fn or sgns_loss)
    finally:
        torch.set_num_threads(threads)
    vectors = center_emb.weight.detach().numpy().astype(np.float32)
    return StaticEmbeddings(vocab, vectors, [int(counts[w]) for w in vocab], losses, time.perf_counter() - t0, n)


def sgns_loss(center, context, noise):
    """Skip-gram's negative-sampling loss, averaged over the batch: -log σ(v·u_c) - Σ_n log σ(-v·u_n)."""
    import torch

    pos = torch.nn.functional.logsigmoid((center * context).sum(-1))
    neg = torch.nn.functional.logsigmoid(-(noise @ center.unsqueeze(-1)).squeeze(-1)).sum(-1)
    return -(pos + neg).mean()


def _sgns_epochs(epochs, n, batch_size, g, center_emb, context_emb, centers_t, contexts_t, noise_table, negatives, opt,
                 loss_fn):
    """The skip-gram negative-sampling training loop; returns the mean loss of each epoch."""
    import torch

    losses = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        total_loss, batches = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            c = center_emb(centers_t[idx])  # (B, dim)
            pos = context_emb(contexts_t[idx])  # (B, dim)
            draw = torch.randint(len(noise_table), (len(idx), negatives), generator=g)
            neg = context_emb(noise_table[draw])  # (B, k, dim)
            loss = loss_fn(c, pos, neg)
            if not (isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.requires_grad):
                raise LabkitUsageError("loss_fn must return one number as a tensor that autograd can differentiate "
                                       f"(a 0-d tensor built from its inputs), not {type(loss).__name__}"
                                       + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else ""))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total_loss += float(loss.detach())
            batches += 1
        losses.append(total_loss / max(1, batches))
    return losses


# ------------------------------------------------------------------------------------------------ contextual
def contextual_vector(word: str, sentence: str, model: str = "minilm"):
    """The vector a transformer gives ``word`` inside ``sentence`` (last layer, mean over its word pieces)."""
    import numpy as np
    import torch

    from .models import load

    lm = load(model)
    tok = lm.tokenizer
    enc = tok(sentence, return_tensors="pt", return_offsets_mapping=True)
    offsets = enc.pop("offset_mapping")[0].tolist()
    low = sentence.lower()
    m = re.search(r"\b" + re.escape(word.lower()) + r"\b", low)
    if not m:
        raise LabkitUsageError(f"{word!r} does not occur (as a whole word) in {sentence!r}")
    pieces = [i for i, (a, b) in enumerate(offsets) if b > a and a >= m.start() and b <= m.end()]
    inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        hidden = lm.model(**inputs).last_hidden_state[0]
    return hidden[pieces].mean(0).numpy().astype(np.float64)


# ------------------------------------------------------------------------------------------------ search
class SearchIndex:
    """Sentence embeddings (all-MiniLM-L6-v2) of some texts; ``search`` ranks them by cosine to a query."""

    def __init__(self, texts: Sequence[str], batch_size: int = 64):
        from transformers.utils import logging as hf_logging

        from .models import sentence_embedder

        self.texts = list(texts)
        if not self.texts:
            raise LabkitUsageError("SearchIndex needs at least one text to search")
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar in the notebook
        try:
            self.model = sentence_embedder()
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self.vectors = self.model.encode(self.texts, batch_size=batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False)

    def embed(self, text: str):
        return self.model.encode([text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)[0]

    def search(self, query: str, k: int = 3) -> list[tuple[float, str]]:
        import numpy as np

        if not isinstance(query, str) or not query.strip():
            raise LabkitUsageError("search needs a non-empty query")
        sims = self.vectors @ self.embed(query)
        return [(round(float(sims[i]), 4), self.texts[i]) for i in np.argsort(-sims)[:k]]

    def __len__(self):
        return len(self.texts)


def keyword_search(query: str, texts: Sequence[str], k: int = 3) -> list[tuple[int, str]]:
    """The baseline: rank texts by how many of the query's words they contain."""
    q = set(words(query))
    scored = sorted(((len(q & set(words(t))), t) for t in texts), key=lambda x: -x[0])
    return scored[:k]
