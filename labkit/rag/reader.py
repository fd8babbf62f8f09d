"""The extractive reader: MiniLM with a span head, the answer step of ``%%rag --answer extractive``.

A reader gets a question and some text and scores every token twice: how likely the answer *starts* there and
how likely it *ends* there (two numbers per token from one linear layer, the "span head", on top of the
encoder). The answer is the span ``i..j`` (``i <= j``, at most ``max_tokens`` long, inside the text and not in
the question) with the highest ``start[i] + end[j]``; the ``[CLS]`` token's ``start[0] + end[0]`` is the score
of *no answer* (SQuAD 2.0's convention). When the best span does not beat "no answer" by the margin chosen on
the dev split (``margin``), the reader says it does not know.

The encoder is the all-MiniLM-L6-v2 the kit already ships (pretrained on real English); ``labkit zoo build
reader`` fine-tunes a LoRA adapter and the span head on synthetic SQuAD-style items (``labkit.rag.train_reader``)
and ships only those (a few MB) in ``labkit/zoo/weights/minilm-reader``. ``labkit.models.load("minilm-reader")``
is the one door that puts them together.

Long inputs (several retrieved chunks) are read in overlapping windows (``max_length`` tokens, ``stride``
overlap); the best span of all windows wins, and the chunk it lies in is the citation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..errors import LabkitUsageError

READER = "minilm-reader"
MAX_LENGTH = 384
STRIDE = 128
MAX_TOKENS = 16
IDK = "I don't know"


@dataclass
class Span:
    """The reader's answer: the text, its score, the chunk it came from (``chunk``, its id) and where in that
    chunk (character offsets). ``margin`` = score - no-answer score; ``answered`` is False when the margin is
    below the reader's threshold (then ``text`` is the best guess and the answer shown is "I don't know")."""

    text: str
    score: float
    null_score: float
    chunk: str | None = None
    start: int = 0
    end: int = 0
    answered: bool = True
    threshold: float = 0.0
    alternatives: list = field(default_factory=list)

    @property
    def margin(self) -> float:
        return self.score - self.null_score

    @property
    def answer(self) -> str:
        return self.text if self.answered else IDK

    def __repr__(self):
        where = f" [{self.chunk} {self.start}:{self.end}]" if self.chunk else ""
        verdict = "" if self.answered else f" -> {IDK} (margin {self.margin:.2f} < {self.threshold:.2f})"
        return f"Span({self.text!r}, score {self.score:.2f}, no-answer {self.null_score:.2f}{where}){verdict}"


def best_span(start_logits, end_logits, allowed=None, max_tokens: int = MAX_TOKENS):
    """The span-scoring step: ``(i, j, score)`` maximising ``start[i] + end[j]`` over ``i <= j < i + max_tokens``
    with both ends ``allowed`` (a boolean mask; default all). Returns ``(0, 0, -inf)`` when nothing is allowed.
    Written with numpy: an upper-triangular band of the outer sum (``T x T``, T <= 512 here)."""
    s = np.asarray(start_logits, dtype=np.float64).reshape(-1)
    e = np.asarray(end_logits, dtype=np.float64).reshape(-1)
    if s.shape != e.shape:
        raise LabkitUsageError(f"start and end logits differ in length ({s.size} vs {e.size})")
    if max_tokens < 1:
        raise LabkitUsageError("max_tokens must be at least 1")
    ok = np.ones(s.size, bool) if allowed is None else np.asarray(allowed, bool).reshape(-1)
    if not ok.any():
        return 0, 0, float("-inf")
    total = s[:, None] + e[None, :]
    i, j = np.indices(total.shape)
    band = (j >= i) & (j - i < max_tokens) & ok[:, None] & ok[None, :]
    total = np.where(band, total, -np.inf)
    flat = int(np.argmax(total))
    a, b = divmod(flat, total.shape[1])
    return a, b, float(total[a, b])


def load(name: str = READER):
    """The reader through the model door (cached there): ``LoadedModel`` with ``.model`` and ``.tokenizer``."""
    from .. import models

    lm = models.load(name)
    if lm.kind != "extractive-qa":
        raise LabkitUsageError(f"{name} is a {lm.kind}, not an extractive reader (try {READER})")
    return lm


@lru_cache(maxsize=8)
def _card(name: str) -> dict:
    """The reader's ``train.json`` (read once per process, not once per question)."""
    from .. import models

    try:
        return json.loads((models.zoo_path(name) / "train.json").read_text())
    except (OSError, ValueError, LabkitUsageError):
        return {}


def default_margin(name: str = READER) -> float:
    """The "I don't know" margin chosen on the dev split when the reader was built (``train.json``)."""
    return float(_card(name).get("idk_margin", 0.0))


def default_read_k(name: str = READER) -> int:
    """How many retrieved chunks the reader reads (chosen on the dev split when it was built)."""
    return int(_card(name).get("read_k", 3))


def read(question: str, passages, *, ids=None, reader=None, margin: float | None = None,
         max_tokens: int = MAX_TOKENS, max_length: int = MAX_LENGTH, stride: int = STRIDE, span_fn=None,
         top: int = 3, joint: bool = False) -> Span:
    """Read ``passages`` (a string or a list of strings, e.g. the retrieved chunks best first; ``ids`` names
    them for the citation) and return the best answer span. Each passage is read on its own (with the question)
    and the span that beats its own window's no-answer score by the most wins, as open-domain readers do
    (DrQA); ``joint=True`` reads them joined into one context instead (windows over the whole). ``span_fn(start,
    end, allowed, max_tokens)`` replaces :func:`best_span` (lab 18 plugs the learner's own in)."""
    import torch

    if isinstance(passages, str):
        passages = [passages]
    keep = [n for n, p in enumerate(passages) if p and p.strip()]
    if ids is None:
        ids = [f"passage {i + 1}" for i in range(len(passages))]
    passages, ids = [passages[n] for n in keep], [ids[n] for n in keep]
    q = " ".join(str(question or "").split())
    if not q:
        raise LabkitUsageError("the question is empty")
    if margin is None:
        margin = default_margin()
    if not passages:
        return Span("", float("-inf"), 0.0, None, answered=False, threshold=margin)
    lm = reader or load()
    tok, model = lm.tokenizer, lm.model
    sep = "\n\n"
    if joint:
        texts = [sep.join(passages)]
        bounds, pos = [], 0  # (start, end) of each passage in the joined context
        for p in passages:
            bounds.append((pos, pos + len(p)))
            pos += len(p) + len(sep)
    else:
        texts = passages
    enc = tok([q] * len(texts), texts, truncation="only_second", max_length=max_length, stride=stride,
              return_overflowing_tokens=True, return_offsets_mapping=True, padding=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping").numpy()
    sample = enc.pop("overflow_to_sample_mapping").tolist()
    with torch.no_grad():
        out = model(**{k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
    starts, ends = out.start_logits.float().numpy(), out.end_logits.float().numpy()
    fn = span_fn or best_span
    cands, nulls = [], {}
    for w in range(starts.shape[0]):
        allowed = np.array([sid == 1 for sid in enc.sequence_ids(w)])
        null = float(starts[w, 0] + ends[w, 0])
        nulls[sample[w]] = min(nulls.get(sample[w], float("inf")), null)
        i, j, score = fn(starts[w], ends[w], allowed, max_tokens)
        if score == float("-inf") or not allowed[i] or not allowed[j] or j < i:
            continue
        cands.append((score, sample[w], int(offsets[w, i, 0]), int(offsets[w, j, 1])))
    if not cands:
        return Span("", float("-inf"), min(nulls.values()), None, answered=False, threshold=margin)
    cands.sort(key=lambda c: -(c[0] - nulls[c[1]]))
    spans = []
    for score, smp, a, b in cands[:max(1, top)]:
        null = nulls[smp]
        if joint:
            k = next((n for n, (s0, e0) in enumerate(bounds) if s0 <= a < e0 + len(sep)), len(bounds) - 1)
            s0 = bounds[k][0]
            text = texts[0][a:b].strip()
        else:
            k, s0 = smp, 0
            text = texts[smp][a:b].strip()
        spans.append(Span(text, score, null, ids[k], a - s0, b - s0, score - null >= margin, margin))
    best = spans[0]
    best.alternatives = spans[1:]
    return best
