"""What retrieval is made of, below the index: the MiniLM encoder, BM25's terms, and a retrieval's results
(``Hit``, ``Retrieval``). ``labkit.rag.index`` builds on these; the answerer, the LangChain faces and the views
read them without importing the index (so no module of the package imports one that imports it back).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np

from .chunking import Chunk

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BOTH_CACHE_MAX = 2_000  # chunk texts whose vectors the encoder keeps for reuse by another index
TOKEN_CACHE_MAX = 5_000  # chunks whose token vectors are kept in memory (~60 KB each in float16)
_PROBE = "labkit retrieval index fingerprint: the quick brown fox"


# ------------------------------------------------------------------------------------------------------ encoder
class Encoder:
    """MiniLM as the index uses it: batched, normalised sentence vectors; token vectors for MaxSim."""

    def __init__(self):
        from .. import models

        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.model = models.sentence_embedder()
        self.name = MODEL_NAME
        self.dim = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension")
                       else self.model.get_sentence_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer
        self.calls = 0  # texts embedded so far (tests check that updates embed only what changed)
        self._queries: dict[str, np.ndarray] = {}  # query text -> vector (questions repeat in labs and evals)
        # chunk text -> (sentence vector, token vectors): a second index over the same text (an evaluation's copy
        # of a knowledge base the learner already indexed) reuses them. The arrays are the ones the indexes hold,
        # so while those live this costs nothing; bounded by BOTH_CACHE_MAX texts.
        self._both: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def queries(self, texts: list[str]) -> np.ndarray:
        """Query vectors, batched, cached by text."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._queries))
        if missing:
            if len(self._queries) > 50_000:
                self._queries.clear()
            self._queries.update(zip(missing, self.encode(missing)))
        return np.stack([self._queries[t] for t in texts])

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.calls += len(texts)
        vecs = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def encode_both(self, texts: list[str], batch_size: int = 64) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward pass -> (normalised sentence vectors, per-text normalised token vectors without
        [CLS]/[SEP], float16). The token vectors are what MaxSim reranking reads."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32), []
        missing = list(dict.fromkeys(t for t in texts if t not in self._both))
        if missing:
            if len(self._both) + len(missing) > BOTH_CACHE_MAX:
                self._both.clear()
            sent, toks = self._encode_both(missing, batch_size)
            self._both.update(zip(missing, zip(sent, toks)))
        pairs = [self._both[t] for t in texts]
        return np.ascontiguousarray(np.stack([p[0] for p in pairs])), [p[1] for p in pairs]

    def _encode_both(self, texts: list[str], batch_size: int) -> tuple[np.ndarray, list[np.ndarray]]:
        self.calls += len(texts)
        out = self.model.encode(list(texts), batch_size=batch_size, output_value=None, show_progress_bar=False)
        sent = np.stack([o["sentence_embedding"].detach().float().numpy() for o in out]).astype(np.float32)
        sent /= np.maximum(np.linalg.norm(sent, axis=1, keepdims=True), 1e-9)
        toks = []
        for o in out:
            a = o["token_embeddings"].detach().float().numpy()
            if "attention_mask" in o:
                a = a[: int(o["attention_mask"].sum())]
            a = a[1:-1]  # drop [CLS] and [SEP]
            a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-9)
            toks.append(a.astype(np.float16))
        return np.ascontiguousarray(sent), toks

    def token_vectors(self, texts: list[str], batch_size: int = 64) -> list[np.ndarray]:
        """Per-token vectors (L2-normalised, float16), [CLS]/[SEP] removed."""
        return self.encode_both(texts, batch_size)[1]

    def n_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

    def truncate(self, text: str) -> tuple[str, str | None]:
        """Cut a query to what the encoder reads; returns (text, notice or None)."""
        limit = self.max_tokens - 2
        enc = self.tokenizer(text, add_special_tokens=False, truncation=False, return_offsets_mapping=True)
        n = len(enc["input_ids"])
        if n <= limit:
            return text, None
        cut = enc["offset_mapping"][limit - 1][1]
        return text[:cut], (f"the question has {n} MiniLM tokens; the encoder reads at most {limit}, so it was "
                            f"truncated to its first {limit} tokens ({cut} of {len(text)} characters)")

    def fingerprint(self) -> list[float]:
        return [round(float(x), 4) for x in self.model.encode([_PROBE], normalize_embeddings=True,
                                                               show_progress_bar=False)[0][:8]]


_ENCODER: Encoder | None = None


def encoder() -> Encoder:
    global _ENCODER
    if _ENCODER is None:
        _ENCODER = Encoder()
    return _ENCODER


# --------------------------------------------------------------------------------------------------- BM25 terms
_STOP = None


def terms(text: str) -> list[str]:
    """BM25's view of a text: lower-case words and numbers, English stop words removed."""
    global _STOP
    if _STOP is None:
        from bm25s.stopwords import STOPWORDS_EN

        _STOP = set(STOPWORDS_EN) | {"s"}
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP]


# ------------------------------------------------------------------------------------------------------ results
@dataclass
class Hit:
    """One retrieved chunk: its rank (1 = best) and score under one retriever."""

    chunk: Chunk
    score: float
    rank: int

    @property
    def id(self) -> str:
        return self.chunk.id


@dataclass
class Retrieval:
    """What each retriever returned for one question; ``hits`` is the list the chosen mode gives."""

    question: str
    mode: str
    k: int
    rerank: bool
    by_retriever: dict[str, list[Hit]]
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> str:
        return "rerank" if self.rerank else self.mode

    @property
    def hits(self) -> list[Hit]:
        return self.by_retriever[self.final][: self.k]

    @property
    def ids(self) -> list[str]:
        return [h.id for h in self.hits]

    def __repr__(self):
        lines = [f"question: {self.question}"]
        for note in self.notices:
            lines.append(f"notice: {note}")
        for h in self.hits:
            text = h.chunk.text.replace("\n", " ")
            lines.append(f"  {h.rank}. [{h.id}] {h.score:.3f}  {text[:90]}{'…' if len(text) > 90 else ''}")
        return "\n".join(lines)


def _jsonable(meta: dict) -> dict:
    out = {}
    for key, value in (meta or {}).items():
        try:
            json.dumps(value)
            out[str(key)] = value
        except TypeError:
            out[str(key)] = str(value)
    return out
