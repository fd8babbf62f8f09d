"""Reference-based metrics for generated answers: exact match and F1 (SQuAD), BLEU and chrF (sacrebleu),
ROUGE (rouge-score), and a small hand-labelled set where they disagree with a person's judgement.

``normalize``/``exact_match``/``f1`` are SQuAD v1.1's (the kit's own; the lab checks a learner's version against
the MLQA evaluation script that ships inside lm-evaluation-harness, an independent copy of the same rules).
"""
from __future__ import annotations

import random
import re
import string
from collections import Counter


def normalize(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize(prediction) == normalize(truth))


def f1(prediction: str, truth: str) -> float:
    p, t = normalize(prediction).split(), normalize(truth).split()
    same = sum((Counter(p) & Counter(t)).values())
    if same == 0:
        return 0.0
    prec, rec = same / len(p), same / len(t)
    return 2 * prec * rec / (prec + rec)


def reference_f1(prediction: str, truth: str) -> float:
    """F1 by the MLQA evaluation script (SQuAD's rules, English) bundled in lm-evaluation-harness."""
    from lm_eval.tasks.mlqa import utils as mlqa

    return float(mlqa.f1_score(prediction, truth, "en"))


def reference_em(prediction: str, truth: str) -> float:
    from lm_eval.tasks.mlqa import utils as mlqa

    return float(mlqa.exact_match_score(prediction, truth, "en"))


_WORDS = ("the a an The A cat Cat dog blue Blue red in on of river River 1979 Mira Vell Tess baker's "
          "old-town town Town harbor green apples, apples. (apples) near the mountains! by sea").split()


def random_pairs(n: int = 300, seed: int = 1) -> list[tuple[str, str]]:
    """Prediction/truth pairs a learner never saw: random words with case, punctuation, articles, repeats."""
    r = random.Random(seed)
    out = []
    for _ in range(n):
        a = " ".join(r.choice(_WORDS) for _ in range(r.randint(0, 6)))
        b = " ".join(r.choice(_WORDS) for _ in range(r.randint(1, 5)))
        if r.random() < 0.3:
            b = a.upper() + r.choice(["", ".", "!", " the"])
        out.append((a, b))
    return out


def agrees_with_reference(f1_fn, em_fn=None, n: int = 300) -> bool:
    """True when a learner's F1 (and EM) equal the MLQA script's on ``random_pairs`` (to 1e-9)."""
    for pred, truth in random_pairs(n):
        if abs(float(f1_fn(pred, truth)) - reference_f1(pred, truth)) > 1e-9:
            return False
        if em_fn is not None and float(em_fn(pred, truth)) != reference_em(pred, truth):
            return False
    return True


def first_disagreement(f1_fn, n: int = 300):
    for pred, truth in random_pairs(n):
        mine, ref = float(f1_fn(pred, truth)), reference_f1(pred, truth)
        if abs(mine - ref) > 1e-9:
            return pred, truth, mine, ref
    return None


# ------------------------------------------------------------------------------- overlap metrics vs a person
#: (question, reference answer, candidate, a person's label: 1 = correct, 0 = wrong). Each wrong candidate
#: shares many words with the reference; each right one says the same thing in other words.
JUDGED = [
    ("Where does Mira Vell live?", "Mira Vell lives in Trowdale.", "She lives in Trowdale.", 1),
    ("Where does Mira Vell live?", "Mira Vell lives in Trowdale.", "Mira Vell lives in Foryfell.", 0),
    ("What is the job of Leo Brick?", "Leo Brick is a baker.", "He bakes bread for a living.", 1),
    ("What is the job of Leo Brick?", "Leo Brick is a baker.", "Leo Brick is a banker.", 0),
    ("When was Ada Stow born?", "Ada Stow was born in 1979.", "In 1979.", 1),
    ("When was Ada Stow born?", "Ada Stow was born in 1979.", "Ada Stow was born in 1997.", 0),
    ("What animal does Finn Gale have?", "Finn Gale has a dog named Pip.", "A dog called Pip.", 1),
    ("What animal does Finn Gale have?", "Finn Gale has a dog named Pip.", "Finn Gale has a cat named Pip.", 0),
    ("What is Trowdale known for?", "Trowdale is known for its cheese.", "Cheese.", 1),
    ("What is Trowdale known for?", "Trowdale is known for its cheese.", "Trowdale is not known for its cheese.", 0),
    ("How many people live in Foryfell?", "Foryfell has 4120 people.", "About four thousand one hundred and twenty.", 1),
    ("How many people live in Foryfell?", "Foryfell has 4120 people.", "Foryfell has 412 people.", 0),
    ("Who is the mayor of Brendale?", "The mayor of Brendale is Nora Pell.", "Nora Pell runs Brendale as its mayor.", 1),
    ("Who is the mayor of Brendale?", "The mayor of Brendale is Nora Pell.", "The mayor of Brendale is Nora Bell.", 0),
    ("What is the favorite color of Kai Moss?", "The favorite color of Kai Moss is green.", "Kai Moss likes green best.", 1),
    ("What is the favorite color of Kai Moss?", "The favorite color of Kai Moss is green.", "The favorite color of Kai Moss is gray.", 0),
]


def overlap_scores(candidate: str, reference: str) -> dict:
    """Sentence-level BLEU and chrF (sacrebleu), ROUGE-1/ROUGE-L F (rouge-score), SQuAD EM and F1."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = _rouge()
    rouge = scorer.score(reference, candidate)
    return {
        "BLEU": sacrebleu.sentence_bleu(candidate, [reference]).score / 100,
        "chrF": sacrebleu.sentence_chrf(candidate, [reference]).score / 100,
        "ROUGE-1": rouge["rouge1"].fmeasure,
        "ROUGE-L": rouge["rougeL"].fmeasure,
        "EM": exact_match(candidate, reference),
        "F1": f1(candidate, reference),
    }


_ROUGE = None


def _rouge():
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    return _ROUGE


def pairwise_agreement(scores: list[float], labels: list[int]) -> float:
    """Share of (right, wrong) pairs of the same question the metric orders as the person did (ties count 1/2)."""
    by_q: dict = {}
    for i, (s, y) in enumerate(zip(scores, labels)):
        by_q.setdefault(i // 2, []).append((s, y))
    good = n = 0.0
    for pair in by_q.values():
        right = [s for s, y in pair if y == 1]
        wrong = [s for s, y in pair if y == 0]
        for a in right:
            for b in wrong:
                n += 1
                good += 1.0 if a > b else 0.5 if a == b else 0.0
    return good / n if n else float("nan")


def corpus_scores(candidates: list[str], references: list[str]) -> dict:
    """Corpus-level BLEU and chrF (sacrebleu's usual way to report them) over a whole set."""
    import sacrebleu

    return {"BLEU": sacrebleu.corpus_bleu(candidates, [references]).score / 100,
            "chrF": sacrebleu.corpus_chrf(candidates, [references]).score / 100}


def handwritten_items() -> list[dict]:
    """The zoo's hand-written context-QA questions (``labkit/zoo/data/handwritten.json``): context, question,
    answers (several accepted spans)."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "zoo" / "data" / "handwritten.json"
    return json.loads(path.read_text(encoding="utf-8"))["context_qa"]


def best_over(fn, prediction: str, answers: list[str]) -> float:
    """SQuAD's rule for several accepted answers: the best score over them."""
    return max(float(fn(prediction, a)) for a in answers)
