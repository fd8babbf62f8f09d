"""Lab 16's engine (labkit.enhance): passkey data and RoPE rescaling through transformers, the distillation loss
and reply masks, the two tasks, merges, and the student version of the lab run end to end."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from labkit import enhance as E

ROOT = Path(__file__).resolve().parents[1]
LAB16 = ROOT / "labs" / "16_model_enhancement.ipynb"


def test_passkey_batches_hide_the_key_once_and_ask_for_it_at_the_end():
    ids, start = E.passkey_batch(50, 40, seed=1)
    assert ids.shape == (50, 40) and start == 38
    for row in ids.tolist():
        assert row.count(E.KEY) == 1 and row.count(E.QUERY) == 1 and row[37] == E.QUERY
        k = row.index(E.KEY)
        assert row[k + 1:k + 3] == row[38:] and all(0 <= d < E.DIGITS for d in row[38:])
        assert k + 3 <= 37  # the key is inside the body, never overlapping the query
    again, _ = E.passkey_batch(50, 40, seed=1)
    assert (again == ids).all()
    assert not (E.passkey_batch(50, 40, seed=2)[0] == ids).all()


def test_with_rope_changes_only_the_angles():
    import torch

    m = E.passkey_model(32, seed=0, hidden=32, layers=1)
    pos = torch.arange(64)
    a0, s0 = E.rope_angles(m, pos)
    lin = E.with_rope(m, "linear", 4.0)
    a1, s1 = E.rope_angles(lin, pos)
    assert torch.allclose(a1, a0 / 4, atol=1e-5) and s0 == s1 == 1.0  # position interpolation: positions / 4
    yarn = E.with_rope(m, "yarn", 4.0)
    a2, s2 = E.rope_angles(yarn, pos)
    assert torch.allclose(a2[:, 0], a0[:, 0], atol=1e-5)            # the fastest frequency is kept
    assert torch.allclose(a2[:, -1], a0[:, -1] / 4, rtol=1e-3)      # the slowest is interpolated
    assert s2 > 1.0                                                  # and attention is sharpened
    assert yarn.config.rope_parameters["original_max_position_embeddings"] == 32
    for k, v in m.state_dict().items():
        assert torch.equal(v, yarn.state_dict()[k]), k
    ids, _ = E.passkey_batch(2, 32, seed=0)
    assert torch.allclose(E.with_rope(m).eval()(input_ids=ids).logits, m.eval()(input_ids=ids).logits, atol=1e-5)


def test_kl_soft_matches_a_direct_formula_and_the_t_squared_property():
    import torch

    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 11, generator=g), torch.randn(5, 11, generator=g)
    for T in (1.0, 3.0):
        p = torch.softmax(t / T, -1)
        want = (p * (p.log() - torch.log_softmax(s / T, -1))).sum(-1).mean() * T * T
        assert torch.allclose(E.kl_soft(s, t, T), want, atol=1e-5)
    assert float(E.kl_soft(s, s, 2.0)) < 1e-6
    # large T: T^2 * KL -> ||(s - mean) - (t - mean)||^2 / (2V), independent of T
    big = [float(E.kl_soft(s, t, T)) for T in (20.0, 40.0)]
    assert abs(big[0] / big[1] - 1) < 0.02


def test_reply_mask_marks_only_the_assistant_turns():
    ids = [0, 5, 9, 9, E.END, E.ASSISTANT, 7, 8, E.END, 5, 9, E.END, E.ASSISTANT, 3, E.END]
    assert E.reply_mask(ids) == [0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1]


def test_tasks_and_accuracy_on_a_model_that_knows_the_answers():
    import torch

    items = E.task_items("A", 20, seed=1)
    assert all(p.startswith("first of: ") and p.endswith(" =") and a == " " + p.split()[2] for p, a in items)
    assert E.task_items("A", 20, seed=1) == items and E.task_items("A", 20, seed=0) != items
    b = E.task_items("B", 200, seed=1)
    assert all(int(a) == int(p.split()[1]) + 1 for p, a in b)
    with pytest.raises(ValueError):
        E.task_items("C", 1)

    import labkit.models

    tok = labkit.models.load_tokenizer("tiny")
    enc = E._encode_items(tok, items[:4])

    class Oracle(torch.nn.Module):  # puts all its mass on the true next token of the known sequences
        def forward(self, input_ids, attention_mask=None):
            out = torch.zeros(*input_ids.shape, len(tok))
            out[:, :-1].scatter_(-1, input_ids[:, 1:, None], 1.0)
            return type("O", (), {"logits": out})()

    assert E.task_accuracy(Oracle(), tok, items[:4]) == 1.0
    assert len(enc) == 4 and all(k < len(s) for s, k in enc)


def test_merges_on_small_modules():
    import torch

    torch.manual_seed(0)
    base = torch.nn.Linear(4, 3)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    mean = E.merge_models(base, [a, b], E.combine_linear(0.5))
    assert torch.allclose(mean.weight, (a.weight + b.weight) / 2)
    ta = E.merge_models(base, [a, b], E.combine_task_arithmetic(1.0))
    assert torch.allclose(ta.weight, a.weight + b.weight - base.weight, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    d = E.dare(torch.ones(20000), p=0.9, generator=g)
    assert abs(float(d.mean()) - 1) < 0.1 and float((d == 0).float().mean()) > 0.85
    tv = torch.tensor([[3.0, -2.0, 0.1, 1.0], [1.0, 4.0, -0.2, -3.0], [5.0, -1.0, 0.3, 2.0]])
    assert E.ties_reference(tv, 0.5).tolist() == [4.0, 4.0, 0.0, -3.0]


def test_distillation_moves_a_student_toward_its_teacher():
    """A fresh 1-layer student of a random 2-layer teacher: soft-label steps raise its agreement with the teacher;
    ``student_from`` copies the teacher's first block."""
    import torch

    teacher = E.passkey_model(32, seed=1, hidden=32, layers=2)
    copy = E.student_from(teacher, layers=1)
    assert len(copy.model.layers) == 1
    assert torch.equal(copy.model.layers[0].mlp.up_proj.weight, teacher.model.layers[0].mlp.up_proj.weight)
    student = E.passkey_model(32, seed=5, hidden=32, layers=1)
    seqs = [[E.ASSISTANT] + s for s in E.passkey_batch(64, 24, seed=3)[0].tolist()]
    held = torch.tensor(seqs[:16])

    def held_kl():
        with torch.no_grad():
            return float(E.kl_soft(student(input_ids=held).logits[:, 1:-1].reshape(-1, E.PASSKEY_VOCAB),
                                   teacher(input_ids=held).logits[:, 1:-1].reshape(-1, E.PASSKEY_VOCAB), 2.0))

    before = held_kl()
    losses = E.distill(student, teacher, seqs[16:], mode="soft", steps=25, batch=8, lr=3e-3, pad=E.PAD)
    after = held_kl()
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0] and after < 0.5 * before, (before, after, losses[0], losses[-1])
    hard = E.lm_metrics(student, seqs[:16], teacher, pad=E.PAD)
    assert hard["loss"] > 0 and 0 <= hard["agree"] <= 1
    assert not any(math.isnan(x) for x in losses)


# ------------------------------------------------------------------------------------------------ the lab
@pytest.mark.slow
def test_student_version_of_lab16_runs_end_to_end(run_student_version):
    """`labkit student build`'s version of lab 16 (every exercise `...`) runs to the end in strict mode, on the
    kit's own functions until the learner writes theirs."""
    report, text = run_student_version(LAB16.name)
    assert report.solutions >= 3, report
    assert "not answered yet" in text and "using the kit's own" in text
    assert "plain fine-tuning on B takes task A" in text


def test_distill_modes_share_data_and_mix_interpolates():
    import torch

    teacher = E.passkey_model(32, seed=1, hidden=32, layers=2)
    seqs = [[E.ASSISTANT] + s for s in E.passkey_batch(16, 12, seed=4)[0].tolist()]
    first = {}
    for mode, alpha in (("hard", 0.5), ("soft", 0.5), ("mix", 0.0), ("mix", 1.0), ("mix", 0.25)):
        student = E.passkey_model(32, seed=5, hidden=32, layers=1)
        first[mode, alpha] = E.distill(student, teacher, seqs, mode=mode, alpha=alpha, steps=1, batch=4, pad=E.PAD)[0]
    assert first["mix", 0.0] == pytest.approx(first["hard", 0.5], rel=1e-5)
    assert first["mix", 1.0] == pytest.approx(first["soft", 0.5], rel=1e-5)
    assert first["mix", 0.25] == pytest.approx(0.25 * first["soft", 0.5] + 0.75 * first["hard", 0.5], rel=1e-4)
    with pytest.raises(ValueError):
        E.distill(student, teacher, seqs, mode="other", steps=1, batch=2, pad=E.PAD)
