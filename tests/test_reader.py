"""The extractive reader (labkit.rag.reader): span scoring, the shipped minilm-reader, "I don't know", the
answer step of %%rag, its training items and its figures on text built apart from its training."""
from __future__ import annotations

import numpy as np
import pytest


def _brute(s, e, ok, max_tokens):
    best = (0, 0, float("-inf"))
    for i in range(len(s)):
        for j in range(i, min(len(s), i + max_tokens)):
            if ok[i] and ok[j] and s[i] + e[j] > best[2]:
                best = (i, j, s[i] + e[j])
    return best


def test_best_span_is_the_best_allowed_span():
    from labkit.rag.reader import best_span

    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(1, 40))
        s, e = rng.normal(size=n), rng.normal(size=n)
        ok = rng.random(n) < 0.7
        m = int(rng.integers(1, 8))
        i, j, sc = best_span(s, e, ok, m)
        bi, bj, bsc = _brute(s, e, ok, m)
        assert sc == pytest.approx(bsc), trial
        if np.isfinite(bsc):
            assert ok[i] and ok[j] and 0 <= j - i < m
    # the end before the start never wins, even when its logits are the largest
    assert best_span([0, 0, 9], [9, 0, 0], None, 5)[:2] in ((2, 2), (0, 0))
    assert best_span([1.0], [1.0], [False], 3) == (0, 0, float("-inf"))


@pytest.fixture(scope="module")
def reader():
    from labkit import models

    if not (models.zoo_path("minilm-reader") / "adapter_model.safetensors").is_file():
        pytest.fail("the shipped reader is missing: labkit zoo build --stage reader")
    return models.load("minilm-reader")


def test_reader_reads_a_learners_sentences_and_cites(reader):
    from labkit.rag.reader import read

    span = read("Where does Amara keep her violin?",
                ["Her friend Duc plays the drums.", "Amara keeps her violin in the attic."], ids=["a", "b"],
                reader=reader)
    assert span.answered and span.chunk == "b" and "attic" in span.text
    assert "Amara keeps her violin in the attic."[span.start:span.end] == span.text
    # the answer is in no passage: the reader declines instead of guessing
    none = read("What is the boiling point of mercury?", ["Amara keeps her violin in the attic."], reader=reader)
    assert not none.answered and none.answer == "I don't know"


def test_rag_extractive_answer_or_i_dont_know():
    from labkit.rag import Index

    ix = Index("recursive", size=200, overlap=0)
    ix.add([("ferry", "The ferry to Hvar leaves at 9:40 from pier three. Tickets cost 12 euros."),
            ("bakery", "Mira Vell runs the bakery in Brellwick. Her cat is called Pip.")])
    r = ix.ask("When does the ferry to Hvar leave?", k=2)
    assert r.method == "extractive" and "9:40" in r.answer and r.citations == ["ferry#0"] and r.faithful
    assert r.score is not None and "9:40" in r.evidence
    idk = ix.ask("Who painted the ceiling of the Sistine Chapel?", k=2)
    assert idk.answer == "I don't know" and idk.citations == [] and idk.notices
    rules = ix.ask("What is the cat called?", k=2, answer="rules")
    assert rules.method == "rules" and rules.citations


def test_training_items_point_at_their_answers_and_avoid_the_shipped_world():
    from labkit.rag.kb import knowledge_base
    from labkit.rag.train_reader import reader_items

    from labkit.rag.train_reader import READER_FACTS, READER_QUESTIONS
    from labkit.zoo.reading import RELATIONS

    # the training-only phrasings never repeat a phrasing of the out-of-world generator (which the reader is judged on)
    heldout = {t for v in RELATIONS.values() for t in v["heldout_facts"] + v["heldout_questions"]}
    ours = {t for v in READER_FACTS.values() for t in v} | {t for v in READER_QUESTIONS.values() for t in v}
    assert not heldout & ours and set(READER_FACTS) <= {k for k, v in RELATIONS.items() if v["facts"]}
    items = reader_items(120, seed=3, kb_seeds=(1,))
    kinds = {it["kind"] for it in items}
    assert {"reading", "kb", "reading-none"} <= kinds
    for it in items:
        if it["start"] >= 0:
            assert it["context"][it["start"]:it["start"] + len(it["answer"])] == it["answer"]
        else:
            assert it["answer"] == ""
    shipped = "\n".join(d.text for d in knowledge_base())
    kb_items = [it for it in items if it["kind"].startswith("kb")]
    assert kb_items and not any(it["context"].split("\n\n")[0][:80] in shipped for it in kb_items)


def test_reader_figures_on_text_built_apart(reader):
    """The hand-written set (contexts and questions written by hand, never generated) through the whole
    pipeline (index, retrieve, read): a fixed floor well above the rule-based baseline."""
    from labkit.rag.reader_eval import evaluate_reader

    res = {s.method: s for s in evaluate_reader(["handwritten"], reader=reader, rules=True)}
    ex, rules = res["extractive (reader)"], res["rules (pre-neural)"]
    assert ex.n_answerable == 30
    assert ex.em >= 0.6 and ex.em > rules.em + 0.15, (ex, rules)


def test_sets_with_the_same_documents_embed_them_once():
    """A second index over the same documents (the kb's dev and test questions in reader_eval) embeds nothing again:
    the encoder keeps chunk vectors by text. The same ids with other text are embedded."""
    from labkit.rag.ingest import SourceDoc
    from labkit.rag.reader_eval import QASet, _index
    from labkit.rag.retrieval import encoder

    docs = [SourceDoc("a.txt", "Amara keeps her violin in the attic."), SourceDoc("b.txt", "Duc plays the drums.")]
    q = [{"id": "q", "question": "Where is the violin?", "answers": ["the attic"]}]
    first = _index(QASet("dev", docs, q))
    calls = encoder().calls
    again = _index(QASet("test", list(docs), []))
    assert encoder().calls == calls and len(again) == len(first)
    assert (again.vectors == first.vectors).all()
    changed = [docs[0], SourceDoc("b.txt", "Duc plays the cello.")]
    other = _index(QASet("dev", changed, q))
    assert encoder().calls == calls + 1 and len(other) == len(first)
    assert "cello" in other.search("What does Duc play?", k=1).hits[0].chunk.text


def test_reader_merge_without_peft_matches_peft():
    """models._merge_lora (no peft import on the learner's first %%rag) gives the weights peft's merge_and_unload
    gives, and the same span scores."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForQuestionAnswering

    from labkit import models

    folder = models.zoo_path("minilm-reader")
    ours = AutoModelForQuestionAnswering.from_pretrained(str(models.minilm_path()), local_files_only=True).eval()
    assert models._merge_lora(ours, folder)
    ref = AutoModelForQuestionAnswering.from_pretrained(str(models.minilm_path()), local_files_only=True)
    ref = PeftModel.from_pretrained(ref, str(folder)).merge_and_unload().eval()
    theirs = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert torch.allclose(p, theirs[name], atol=1e-5), name
    lm = models.load("minilm-reader")
    enc = lm.tokenizer("Where is the violin?", "Amara keeps her violin in the attic.", return_tensors="pt")
    with torch.no_grad():
        a, b = lm.model(**enc), ref(**enc)
    assert torch.allclose(a.start_logits, b.start_logits, atol=1e-4)
    assert not torch.allclose(a.start_logits, ours.__class__.from_pretrained(
        str(models.minilm_path()), local_files_only=True).eval()(**enc).start_logits, atol=1e-2)


def test_out_of_world_questions_have_one_answer_in_the_whole_collection():
    """Open-domain questions about generic things ("the café", "the board meeting") can be answered by several
    documents. Read from the documents' text (not from the generator's trace the set is built with): each such
    question keeps one value in the whole collection, its gold answer, and a question without an answer has none."""
    import re

    from labkit.rag.reader_eval import ood_set

    qs = ood_set(n=200, seed=12)
    text = "\n".join(d.text for d in qs.docs)
    pairs = [(r"How early does (.+) open\?", r"The doors of {s} are unlocked at (.+?)\.(?:\s|$)"),
             (r"What does the (.+) sell for\?", r"A {s} like that goes for (.+?)\.(?:\s|$)"),
             (r"For what reason was the (.+) moved\?", r"Because ([^,]+), the {s} had to move\."),
             (r"What is the length of the (.+)\?", r"It took (.+?) to finish the {s}\.")]
    checked = 0
    for q in qs.questions:
        for ask, say in pairs:
            m = re.fullmatch(ask, q["question"])
            if not m:
                continue
            values = set(re.findall(say.format(s=re.escape(m.group(1))), text, flags=re.IGNORECASE))
            assert values == set(q["answers"]), (q, values)
            checked += 1
    assert checked >= 15
