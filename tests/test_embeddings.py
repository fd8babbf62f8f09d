"""labkit.embeddings: skip-gram, metrics, analogies, projection, contextual vectors, semantic search."""
from __future__ import annotations

import numpy as np
import pytest

from labkit import embeddings as E
from labkit.errors import LabkitUsageError


def test_metrics_agree_with_numpy():
    u, v = np.array([1.0, 2.0, 2.0]), np.array([2.0, 0.0, 1.0])
    assert E.dot(u, v) == 4.0
    assert E.cosine(u, v) == pytest.approx(4.0 / (3.0 * 5 ** 0.5))
    assert E.euclidean(u, v) == pytest.approx(np.sqrt(1 + 4 + 1))
    a, b = u / 3, v / 5 ** 0.5  # unit vectors: |a-b|² = 2 - 2 cos
    assert E.euclidean(a, b) ** 2 == pytest.approx(2 - 2 * E.cosine(a, b))


def test_static_embeddings_arithmetic_on_known_vectors():
    vecs = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1], [-1, 0, 0]], dtype=np.float32)
    wv = E.StaticEmbeddings(["man", "king", "woman", "queen", "other"], vecs, [1] * 5, [1.0, 0.5])
    assert wv.analogy("man", "king", "woman", 1)[0][0] == "queen"
    assert wv.most_similar("man", 1)[0][0] == "king"
    assert wv.similarity("man", "other") == pytest.approx(-1.0)
    xy = wv.project(["man", "king", "woman", "queen"])
    assert xy.shape == (4, 2)
    with pytest.raises(LabkitUsageError, match="not in the vocabulary"):
        wv.vector("emperor")
    with pytest.raises(LabkitUsageError, match="metric"):
        wv.similarity("man", "king", "manhattan")


@pytest.mark.slow
def test_skipgram_learns_categories():
    from labkit.zoo.corpus import ANIMALS, COLORS

    wv = E.train_skipgram(E.corpus_texts(1200), window=2, epochs=2, lr=0.03, seed=0)
    assert wv.losses[-1] < wv.losses[0]
    assert 300 < len(wv.words) < 2000 and wv.vectors.shape[1] == 48
    # nothing told it what an animal or a colour is; co-occurrence alone groups them
    near_dog = [w for w, _ in wv.most_similar("dog", 5)]
    near_red = [w for w, _ in wv.most_similar("red", 5)]
    assert sum(w in ANIMALS for w in near_dog) >= 3, near_dog
    assert sum(w in COLORS for w in near_red) >= 3, near_red


def test_skipgram_bad_input():
    with pytest.raises(LabkitUsageError, match="fewer than 2 words"):
        E.train_skipgram(["just a few words"], min_count=5)
    texts = ["the cat sat on the mat and the dog sat on the rug"] * 20
    with pytest.raises(LabkitUsageError, match="loss_fn must be a function"):
        E.train_skipgram(texts, min_count=1, loss_fn="mine")
    with pytest.raises(LabkitUsageError, match="0-d tensor"):   # a learner's loss that forgot the mean
        E.train_skipgram(texts, min_count=1, epochs=1, loss_fn=lambda c, p, n: (c * p).sum(-1))


def test_skipgram_trains_with_a_given_loss():
    texts = ["the cat sat on the mat and the dog sat on the rug"] * 20
    seen = []
    def loss(c, p, n):
        seen.append((c.shape, n.shape))
        return E.sgns_loss(c, p, n)
    wv = E.train_skipgram(texts, min_count=1, epochs=2, negatives=3, dim=8, loss_fn=loss)
    assert seen and seen[0][1][1:] == (3, 8) and wv.losses[-1] < wv.losses[0]


def test_contextual_vectors_depend_on_context():
    river = E.contextual_vector("bank", "We sat on the grassy bank of the river.")
    money = E.contextual_vector("bank", "She went to the bank to open a savings account.")
    money2 = E.contextual_vector("bank", "The bank approved the loan for the bakery.")
    assert river.shape == (384,)
    assert E.cosine(money, money2) > E.cosine(river, money)
    with pytest.raises(LabkitUsageError, match="does not occur"):
        E.contextual_vector("bank", "No such word here.")


def test_semantic_search_beats_keywords():
    facts = ["Lena Glee is a doctor.", "Otto Flust is a miller.", "Will Deeby has an owl named Bramble.",
             "Jon Prarnson is a baker.", "Ruby Floth lives in Grollhaven."]
    index = E.SearchIndex(facts)
    assert index.search("Who treats sick people?", 1)[0][1] == "Lena Glee is a doctor."
    assert index.search("Who bakes bread for a living?", 1)[0][1] == "Jon Prarnson is a baker."
    assert E.keyword_search("Who treats sick people?", facts, 1)[0][0] == 0  # no shared word at all
    with pytest.raises(LabkitUsageError):
        index.search("  ")
