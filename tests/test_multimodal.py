"""Lab 20's engine (labkit.multimodal): the rendered world, patches, the contrastive loss, recall@k, cross-attention,
a short CLIP training run, and the student version of the lab run end to end."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labkit import multimodal as M
from conftest import lab_checkers

ROOT = Path(__file__).resolve().parents[1]
LAB20 = ROOT / "labs" / "20_multimodal.ipynb"


def test_the_world_is_fixed_and_its_pictures_show_their_captions():
    assert M.scenes(5, seed=3) == M.scenes(5, seed=3)
    train = M.scenes(500, seed=1)
    assert not any(s.heldout for s in train) and {s.pair for s in train} == set(M.SEEN_PAIRS)
    assert len(M.SEEN_PAIRS) == 15 and {c for c, _ in M.HELDOUT_PAIRS} == set(M.COLOURS)
    assert {s for _, s in M.SEEN_PAIRS} == set(M.SHAPES)  # every shape is still seen with some colour
    assert M.Scene("red", "cross", 2, "left").caption() == "two red crosses on the left"
    assert M.Scene("blue", "circle", 1, "right").caption() == "one blue circle on the right"
    assert len(M.all_combos()) == 120
    s = M.Scene("blue", "square", 3, "right", seed=4)
    img = M.render(s).astype(int)
    assert img.shape == (32, 32, 3) and np.array_equal(img, M.render(s).astype(int))
    ink = np.abs(img - np.array(M.BACKGROUND)).sum(-1) > 90
    assert ink[:, 16:].sum() > 60 and ink[:, :16].sum() == 0  # the shapes are on the right half only
    blue = img[ink]
    assert (blue[:, 2] > blue[:, 0] + 100).all()  # and blue
    # counts: connected blobs of ink
    from scipy import ndimage
    for n in (1, 2, 3):
        for seed in range(5):
            for shape in M.SHAPES:
                sc = M.Scene("green", shape, n, "left", seed=seed)
                ink = np.abs(M.render(sc).astype(int) - np.array(M.BACKGROUND)).sum(-1) > 90
                assert ndimage.label(ink)[1] == n, (sc, ndimage.label(ink)[1])


def test_patchify_is_the_picture_as_a_sequence():
    x = M.images(M.scenes(2, seed=0))
    p = M.patchify(x)
    assert p.shape == (2, 64, 48)
    # patch 9 is row 1, column 1: pixels 4-7 x 4-7 of each colour channel
    assert torch.equal(p[1, 9].reshape(3, 4, 4), x[1, :, 4:8, 4:8])
    assert M.encode(["two red circles on the left", "a red circle"]).tolist()[1][3:] == [0, 0, 0]


def test_reference_contrastive_loss_matches_a_hand_computed_one():
    g = torch.Generator().manual_seed(0)
    a, b = (F.normalize(torch.randn(6, 5, generator=g), dim=-1) for _ in range(2))
    logits = (a @ b.T / 0.2).double().numpy()
    rows = np.mean([np.log(np.exp(r).sum()) - r[i] for i, r in enumerate(logits)])
    cols = np.mean([np.log(np.exp(c).sum()) - c[i] for i, c in enumerate(logits.T)])
    assert float(M.reference_contrastive_loss(a, b, 0.2)) == pytest.approx((rows + cols) / 2, rel=1e-5)
    same = F.normalize(torch.ones(7, 3), dim=-1)
    assert float(M.reference_contrastive_loss(same, same, 0.1)) == pytest.approx(math.log(7), rel=1e-5)
    assert float(M.reference_contrastive_loss(a, a, 0.01)) < 1e-3  # perfectly matched and sharp: no loss


def test_recall_at_k_and_cross_attention_references():
    s = torch.tensor([[0.9, 0.1, 0.5], [0.8, 0.2, 0.9], [0.1, 0.3, 0.2]])
    assert M.reference_recall_at_k(s, 1) == pytest.approx(1 / 3)  # only row 0's own is top
    assert M.reference_recall_at_k(s, 2) == pytest.approx(2 / 3)  # row 1's own is third
    assert M.reference_recall_at_k(s, 3) == 1.0
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(2, 3, 8, generator=g), torch.randn(2, 10, 8, generator=g), torch.randn(2, 10, 8, generator=g)
    out, w = M.reference_cross_attention(q, k, v)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6)
    assert w.shape == (2, 3, 10) and torch.allclose(w.sum(-1), torch.ones(2, 3))


@pytest.fixture(scope="module")
def short_run():
    torch.set_num_threads(1)
    tr = M.scenes(500, seed=1)
    data = (M.images(tr), M.encode([s.caption() for s in tr]))
    model, log = M.train_clip(data=data, steps=60, batch=64)
    return tr, data, model, log


def test_a_short_clip_run_learns(short_run):
    tr, data, model, log = short_run
    test = M.scenes(200, seed=101)
    x = M.images(test)
    assert np.mean(log.loss[-10:]) < log.loss[0] - 1.0
    z = M.zero_shot(model, x, test)
    assert z["colour"] > 0.6 and z["accuracy"] > 0.15  # chance: 20% colour, 5% pair
    untrained = M.zero_shot(M.CLIP(), x, test)
    assert untrained["accuracy"] < 0.12 and untrained["colour"] < 0.4
    sim = M.similarity(model, M.all_combos(M.SEEN_PAIRS, seed=3))
    assert M.reference_recall_at_k(sim, 10) > 3 * 10 / 90  # well above chance


def test_vqa_head_trains_on_frozen_tokens_and_attends_over_patches(short_run):
    tr, (x, _), clip, _ = short_run
    with torch.no_grad():
        tok = clip.image.tokens(x)
    vqa, log = M.train_vqa(tok, tr, steps=60, batch=128)
    acc = M.vqa_accuracy(vqa, tok, tr)
    assert acc["side"] > 0.75 and acc["colour"] > 0.5
    answers, w = M.ask(vqa, tok[:4], M.QUESTIONS["colour"])
    assert len(answers) == 4 and w.shape == (4, 8, 8) and torch.allclose(w.sum((1, 2)), torch.ones(4), atol=1e-5)


# ------------------------------------------------------------------------------------------------ the lab
@pytest.mark.slow
def test_student_version_of_lab20_runs_end_to_end(run_student_version):
    """`labkit student build`'s version of lab 20 (every exercise `...`) runs to the end in strict mode: each later
    cell uses the kit's own version until the learner writes theirs."""
    report, text = run_student_version(LAB20.name)
    assert report.solutions >= 3, report
    assert "not answered yet" in text and "using the kit's own" in text
    assert "zero-shot, 20 classes" in text and "VQA head" in text


def _lab_checkers() -> dict:
    return lab_checkers(LAB20, {"torch": torch, "F": F, "np": np, "M": M})


def test_the_lab_checkers_tell_right_from_wrong(capsys):
    ns = _lab_checkers()
    loss, recall, attend = ns["_is_the_contrastive_loss"], ns["_is_recall_at_k"], ns["_is_cross_attention"]
    assert loss(M.reference_contrastive_loss) and recall(M.reference_recall_at_k) and attend(M.reference_cross_attention)

    def one_way(i, t, temp):  # images -> texts only
        return F.cross_entropy(i @ t.T / temp, torch.arange(len(i)))

    def no_temperature(i, t, temp):
        return M.reference_contrastive_loss(i, t, 1.0)

    def summed(i, t, temp):
        logits = i @ t.T / temp
        return F.cross_entropy(logits, torch.arange(len(i)), reduction="sum")

    def detached(i, t, temp):
        return M.reference_contrastive_loss(i.detach(), t.detach(), temp)

    for wrong in (one_way, no_temperature, summed, detached):
        assert not loss(wrong), wrong.__name__
    assert not recall(lambda s, k: M.reference_recall_at_k(s, k + 1))            # off by one
    assert not recall(lambda s, k: M.reference_recall_at_k(s.T, k) if s.shape[0] == s.shape[1] else 0.0)
    assert not attend(lambda q, k, v: (torch.softmax(q @ k.transpose(-1, -2), -1) @ v,
                                       torch.softmax(q @ k.transpose(-1, -2), -1)))  # unscaled
    assert not attend(lambda q, k, v: (torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, 1) @ v,
                                       torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, 1)))  # wrong axis
