"""Answers from retrieved chunks, with citations.

- ``extractive`` (default): the trained reader (``labkit.rag.reader``, MiniLM with a span head) reads the top
  retrieved chunks and returns the best span, its score and the chunk it came from. When no span beats "no
  answer" by the margin chosen on the dev split, the answer is "I don't know" (and nothing is cited).
- ``rules``: the pre-neural baseline: the sentence that best matches the question (MiniLM cosine plus the share
  of question words it contains), and inside it the span that is not the question's own words, picked by
  question type. No training; shown in lab 18 beside the reader.
- ``tiny-chat`` (or any causal LM name/folder): the chunks are given to the model in the zoo's context-QA format
  (``labkit.zoo.formats.context_qa_messages``), greedy decoding; the citations are the retrieved chunks that
  contain the generated answer. A generated answer found in no chunk is not faithful to the sources: it is
  not shown as the answer ("I don't know", with what the model said in a notice), so no answer goes uncited.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import LabkitError, LabkitUsageError
from ..viewable import Viewable
from .retrieval import Hit, Retrieval, encoder, terms
from .reader import IDK

_SENT = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")
_PRONOUNS = {"he", "she", "it", "they", "him", "her", "his", "its", "their", "them", "there", "that town",
             "this town", "that person"}


@dataclass
class RagResult(Viewable):
    """One question answered: the retrieval (all retrievers' lists), the answer and the chunks it cites."""

    question: str
    retrieval: Retrieval
    answer: str
    citations: list[str]
    method: str
    evidence: str = ""  # the sentence (extractive) or context (generative) the answer came from
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0
    rewritten: str | None = None  # the stand-alone question used for retrieval (multi-turn)
    score: float | None = None  # the reader's span score minus its no-answer score (extractive)
    faithful: bool | None = None  # the answer occurs in a chunk it cites (None: declined)
    said: str = ""  # a generated answer that was withheld because no chunk supports it

    @property
    def hits(self) -> list[Hit]:
        return self.retrieval.hits

    def __repr__(self):
        lines = [f"Q: {self.question}"]
        if self.rewritten and self.rewritten != self.question:
            lines.append(f"   (searched as: {self.rewritten})")
        lines.append(f"A: {self.answer}  [{', '.join(self.citations) or 'no citation'}]  ({self.method})")
        for note in self.notices + self.retrieval.notices:
            lines.append(f"notice: {note}")
        lines.append(f"retrieved ({self.retrieval.final}, k={self.retrieval.k}):")
        lines += repr(self.retrieval).splitlines()[1 + len(self.retrieval.notices):]
        return "\n".join(lines)

    def _repr_html_(self):
        return self.html()


@dataclass
class RagResults(Viewable):
    """Several questions (one per cell line)."""

    results: list[RagResult]

    def __iter__(self):
        return iter(self.results)

    def __len__(self):
        return len(self.results)

    def __getitem__(self, i):
        return self.results[i]

    def __repr__(self):
        return "\n\n".join(repr(r) for r in self.results)


# --------------------------------------------------------------------------------------------------- extractive
def sentences(text: str) -> list[tuple[int, str]]:
    return [(m.start(), m.group().strip()) for m in _SENT.finditer(text) if m.group().strip()]


def _runs(sentence: str, qterms: set[str]) -> list[tuple[int, int]]:
    """Maximal runs of words that are neither question words nor stop words (commas and stop words break a
    run, except short connectors inside a name or a number phrase)."""
    runs, cur = [], None
    for m in re.finditer(r"[A-Za-z0-9']+|[,;:.!?]", sentence):
        w = m.group()
        content = bool(re.match(r"\w", w)) and bool(terms(w)) and all(t not in qterms for t in terms(w))
        if content:
            cur = (cur[0], m.end()) if cur else (m.start(), m.end())
        elif cur:
            runs.append(cur)
            cur = None
    if cur:
        runs.append(cur)
    return runs


def answer_span(sentence: str, question: str) -> str:
    """The answer inside the chosen sentence: the words that are not the question's own, picked by the type of
    answer the question asks for (who/where -> a name, when/how many -> a number, else the last new phrase).
    A rule-based reader in the style of pre-neural QA systems; a trained reader (tiny-chat) replaces it."""
    qterms = set(terms(question))
    qterms |= {t[:-1] for t in qterms if t.endswith("s")} | {t + "s" for t in qterms}
    runs = [sentence[a:b] for a, b in _runs(sentence, qterms)]
    if not runs:
        return sentence.rstrip(".!?")
    q = question.lower()
    if re.match(r"\s*(when|how many|how much|in what year|what year)", q):
        nums = [r for r in runs if re.search(r"\d", r)]
        if nums:
            return nums[0]
    if re.match(r"\s*(who|where|which town|in which town)", q):
        names = [r for r in runs if re.match(r"[A-Z]", r)]
        if names:
            return names[-1] if len(names) > 1 and not q.startswith("who") else names[0]
    # "what"-questions: the last new phrase ("... works as a *baker*", "... is named *Pip*")
    return runs[-1]


def _heads(group: list[str]) -> list[str]:
    """Per sentence, the latest sentence up to it that opens with a name (not a pronoun): what its pronouns
    most likely refer to."""
    out, last = [], ""
    for sent in group:
        first = sent.split()[0] if sent.split() else ""
        if first[:1].isupper() and not _PRONOUN_RE.fullmatch(first.strip(",")):
            last = sent
        out.append(last)
    return out


_SENT_CACHE: dict[tuple[str, str], tuple[list[str], np.ndarray]] = {}
_HEAD: dict[tuple[str, str], list[str]] = {}  # per sentence, the first sentence of its paragraph


def _sentence_vectors(hits: list[Hit]) -> list[tuple[str, str, np.ndarray]]:
    """(chunk id, sentence, vector) for the hits' sentences; vectors cached per chunk text."""
    enc = encoder()
    missing = [h for h in hits if (h.id, h.chunk.text) not in _SENT_CACHE]
    if missing:
        sents = [[s for _, s in sentences(h.chunk.text)] for h in missing]
        for h, group in zip(missing, sents):
            _HEAD[(h.id, h.chunk.text)] = _heads(group)
        flat = enc.encode([s for group in sents for s in group])
        pos = 0
        for h, group in zip(missing, sents):
            _SENT_CACHE[(h.id, h.chunk.text)] = (group, flat[pos:pos + len(group)])
            pos += len(group)
        if len(_SENT_CACHE) > 20_000:
            _SENT_CACHE.clear()
            _HEAD.clear()
    out = []
    for h in hits:
        group, vecs = _SENT_CACHE.get((h.id, h.chunk.text)) or ([], [])
        heads = _HEAD.get((h.id, h.chunk.text)) or [""] * len(group)
        out += [(h.id, s, v, hd) for s, v, hd in zip(group, vecs, heads)]
    return out


_PRONOUN_RE = re.compile(r"\b(he|she|him|his|her|hers|it|its|they|them|their)\b", re.I)
_LEAD_NAME = re.compile(r"^\s*((?:[A-Z][\w'-]*\s?)+)")


def _referent(sentence: str, head: str) -> str:
    """The name a pronoun in ``sentence`` most likely refers to: the name that opens its paragraph."""
    if not head or head == sentence or not _PRONOUN_RE.search(sentence):
        return ""
    m = _LEAD_NAME.match(head)
    return m.group(1) if m else ""


def extractive(question: str, hits: list[Hit], qvec: np.ndarray | None = None, *, read_k: int | None = None,
               margin: float | None = None):
    """The trained reader on the top ``read_k`` hits: (answer or "I don't know", [cited chunk id], the sentence
    around the span, the Span)."""
    from .reader import default_read_k, read

    hs = hits[:read_k or default_read_k()]
    span = read(question, [h.chunk.text for h in hs], ids=[h.id for h in hs], margin=margin)
    if not span.answered:
        return span.answer, [], "", span
    text = next((h.chunk.text for h in hs if h.id == span.chunk), "")
    around = next((s for at, s in sentences(text) if at <= span.start < at + len(s) + 1), span.text)
    return span.text, [span.chunk], around, span


def grounded(answer: str, hits: list[Hit]) -> list[str]:
    """The ids of the hits whose text contains ``answer`` (case and spacing ignored): its citations."""
    low = " ".join(answer.lower().split()).strip(" .")
    return [h.id for h in hits if low and low in " ".join(h.chunk.text.lower().split())]


def extractive_rules(question: str, hits: list[Hit], qvec: np.ndarray | None = None) -> tuple[str, list[str], str]:
    """The rule-based baseline: (answer, [cited chunk id], supporting sentence)."""
    rows = _sentence_vectors(hits)
    if not rows:
        return "", [], ""
    cands = [(cid, s) for cid, s, _, _ in rows]
    if qvec is None:
        qvec = encoder().encode([question])[0]
    cos = np.stack([v for _, _, v, _ in rows]) @ np.asarray(qvec, dtype=np.float32).reshape(-1)
    q = set(terms(question))
    # a sentence's words plus those of its paragraph's first sentence ("She was born in 1967." is about the
    # person named at the start of the paragraph): crude coreference, enough for entity-centred text
    overlap = np.array([len(q & (set(terms(s)) | set(terms(_referent(s, hd))))) / max(1, len(q))
                        for _, s, _, hd in rows])
    best = int(np.argmax(cos + overlap))
    cid, sent = cands[best]
    return answer_span(sent, question), [cid], sent


def extractive_rules_many(questions: list[str], hits_lists: list[list[Hit]]) -> list[tuple[str, list[str], str]]:
    """:func:`extractive_rules` for many questions, with the encoder work in two batched calls (every sentence of
    every hit, then every question) instead of two small calls per question."""
    unique = list({(h.id, h.chunk.text): h for hs in hits_lists for h in hs}.values())
    _sentence_vectors(unique)  # fills the per-chunk sentence cache in one call
    qvecs = encoder().encode(list(questions)) if questions else []
    return [extractive_rules(q, hs, v) for q, hs, v in zip(questions, hits_lists, qvecs)]


# --------------------------------------------------------------------------------------------------- generative
def generate_answer(model_name: str, question: str, hits: list[Hit], max_new_tokens: int = 24):
    """Ask a causal LM (tiny-chat by default) in the zoo's context-QA format. Returns (answer, context, notes)."""
    from .. import models
    from ..zoo import formats as F

    from ..generate import _is_gguf

    if _is_gguf(model_name):
        return _generate_answer_gguf(model_name, question, hits, max_new_tokens)
    try:
        lm = models.resolve(model_name, kinds=("causal-lm",), use="a generated answer")
    except LabkitError as exc:  # the same kind of error, with the way out
        raise type(exc)(f"answer={model_name!r}: {exc} Meanwhile answer='extractive' works without a "
                        f"generator.") from None
    if lm.tokenizer is None:
        raise LabkitUsageError(f"answer={model_name!r}: that model has no tokenizer; use tiny-chat, a causal LM "
                               f"folder, or extractive")
    import torch

    tok, model = lm.tokenizer, lm.model
    limit = models.context_length(model, tok, default=512) - max_new_tokens - 8
    notes = []
    context = ""
    for h in hits:  # best first, as many chunks as fit the model's context
        trial = (context + "\n" + h.chunk.text).strip()
        prompt = F.format_chat(F.context_qa_messages(trial, question))
        if len(tok(prompt, add_special_tokens=False, verbose=False)["input_ids"]) > limit:
            notes.append(f"only {context.count(chr(10)) + 1 if context else 0} of {len(hits)} chunks fit the "
                         f"model's {limit + max_new_tokens + 8}-token context")
            break
        context = trial
    if not context:
        context = hits[0].chunk.text if hits else ""
    prompt = F.format_chat(F.context_qa_messages(context, question))
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt", truncation=True, max_length=limit)
    end_id = tok.convert_tokens_to_ids(F.END) if F.END in tok.get_vocab() else None
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=[i for i in (end_id, tok.eos_token_id) if i is not None] or None,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    text = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=False)
    return F.reply_text(text), context, notes


def _generate_answer_gguf(model_name: str, question: str, hits: list[Hit], max_new_tokens: int):
    """The same context-QA prompt and greedy decoding, run by llama.cpp on a GGUF file (labkit export gguf)."""
    from .. import models
    from ..generate import generate
    from ..zoo import formats as F

    llm = models.resolve(model_name, kinds=("gguf",), use="a generated answer").model
    limit = int(llm.n_ctx()) - max_new_tokens - 8
    notes, context = [], ""
    for h in hits:
        trial = (context + "\n" + h.chunk.text).strip()
        prompt = F.format_chat(F.context_qa_messages(trial, question))
        if len(llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)) > limit:
            notes.append(f"only {context.count(chr(10)) + 1 if context else 0} of {len(hits)} chunks fit the "
                         f"model's {limit + max_new_tokens + 8}-token context")
            break
        context = trial
    if not context:
        context = hits[0].chunk.text if hits else ""
    prompt = F.format_chat(F.context_qa_messages(context, question))
    out = generate(prompt, model_name, temperature=0, max_new_tokens=max_new_tokens)
    return F.reply_text(out.text), context, notes + out.notes


# --------------------------------------------------------------------------------------------------- multi-turn
_NAME = re.compile(r"\b([A-Z][a-z]+(?: [A-Z][a-z]+)*)\b")
_QWORDS = {"What", "Who", "Where", "When", "Which", "How", "Why", "Is", "Does", "Do", "In", "The", "And", "Tell",
           "A", "An", "Did", "Can", "Also", "Then", "She", "He", "It", "They", "Her", "His", "Its", "Their"}


def last_entity(history: list[dict]) -> str | None:
    """The most recent capitalised name in the conversation (answers first, then questions)."""
    for turn in reversed(history or []):
        for key in ("answer", "question"):
            names = [n for n in _NAME.findall(turn.get(key, "")) if n.split()[0] not in _QWORDS]
            if names:
                return names[-1] if key == "answer" else names[0]
    return None


def contextualize(question: str, history: list[dict] | None) -> str:
    """Rewrite a follow-up ("Where does she live?") into a stand-alone question ("Where does Mira Vell live?")
    by putting the last named entity of the conversation in place of its pronoun. At scale an LLM does this
    ("condense question" in LangChain's conversational chains); the retrieval problem it solves is the same."""
    if not history:
        return question
    ent = last_entity(history)
    if not ent:
        return question

    def repl(m):
        w = m.group(0)
        if w.lower() in ("his", "her", "its", "their"):
            return ent + "'s"
        return ent

    pattern = r"\b(?:he|she|him|they|them|it|his|her|its|their)\b"
    return re.sub(pattern, repl, question, count=1, flags=re.I)


def answer_question(index, question: str, *, k: int = 5, mode: str = "hybrid", rerank: bool = False,
                    how: str = "extractive", history: list[dict] | None = None) -> RagResult:
    t0 = time.perf_counter()
    asked = " ".join((question or "").split())
    if not asked:
        raise LabkitUsageError("the question is empty: write one question per line in the cell")
    standalone = contextualize(asked, history)
    retrieval = index.search(standalone, k=k, mode=mode, rerank=rerank)
    hits = retrieval.hits
    how = (how or "extractive").strip()
    notices = []
    score = faithful = None
    said = ""
    if how == "extractive":
        ans, cites, evidence, span = extractive(standalone, hits)
        method = "extractive"
        score = span.margin
        faithful = True if cites else None
        if not cites:
            notices.append(f"no retrieved chunk supports an answer (best span {span.text!r} scored "
                           f"{span.margin:.2f} over 'no answer', below the reader's margin {span.threshold:.2f})")
    elif how == "rules":
        ans, cites, evidence = extractive_rules(standalone, hits)
        method = "rules"
        faithful = bool(cites)
    else:
        said, evidence, notices = generate_answer(how, standalone, hits)
        cites = grounded(said, hits)
        method = f"generated by {how}"
        faithful = bool(cites) if said.strip() else None
        if cites:
            ans, said = said, ""
        else:
            ans = IDK
            notices.append(f"{how} answered {said!r}, which occurs in none of the retrieved chunks: not faithful "
                           f"to the sources, so it is not given as the answer")
    return RagResult(asked, retrieval, ans, cites, method, evidence, notices, time.perf_counter() - t0,
                     standalone if standalone != asked else None, score, faithful, said)
