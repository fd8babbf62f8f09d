"""Lab 15's engine (labkit.variants): the router and balancing loss, the MoE layer, linear attention, the selective
scan and the sliding-window mask against independent forms; a short MoE and dense training run; the memory counter;
and the student version of the lab run end to end."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from labkit import variants as V

ROOT = Path(__file__).resolve().parents[1]
LAB15 = ROOT / "labs" / "15_architecture_variants.ipynb"


def test_router_matches_topk_and_renormalises():
    logits = torch.tensor([[0.0, 2.0, 1.0, -1.0], [3.0, 0.0, 0.0, 2.5]])
    probs, w, idx = V.top_k_route(logits, 2)
    assert torch.allclose(probs.sum(-1), torch.ones(2))
    assert idx.tolist() == [[1, 2], [0, 3]]
    assert torch.allclose(w.sum(-1), torch.ones(2))
    e = math.exp
    assert math.isclose(w[0, 0].item(), e(2) / (e(2) + e(1)), rel_tol=1e-5)


def test_balance_loss_is_one_when_even_and_E_when_collapsed():
    E, T = 4, 40
    even = V.load_balance_loss(torch.full((T, E), 1 / E), torch.arange(T)[:, None] % E, E)
    assert math.isclose(even.item(), 1.0, rel_tol=1e-6)
    collapsed = V.load_balance_loss(F.one_hot(torch.zeros(T, dtype=torch.long), E).float(),
                                    torch.zeros(T, 1, dtype=torch.long), E)
    assert math.isclose(collapsed.item(), E, rel_tol=1e-6)
    # only first choices count: a second choice on another expert changes nothing
    idx2 = torch.stack([torch.zeros(T, dtype=torch.long), torch.ones(T, dtype=torch.long)], 1)
    assert math.isclose(V.load_balance_loss(F.one_hot(torch.zeros(T, dtype=torch.long), E).float(), idx2, E).item(), E)


def test_moe_layer_equals_explicit_mixture_and_counts_active_parameters():
    torch.manual_seed(0)
    moe = V.MoEFeedForward(8, 6, n_experts=4, k=2)
    x = torch.randn(5, 8)
    out = moe(x)
    probs, w, idx = V.top_k_route(moe.router(x), 2)
    want = torch.stack([sum(w[t, s] * moe.experts[int(idx[t, s])](x[t]) for s in range(2)) for t in range(5)])
    assert torch.allclose(out, want, atol=1e-5)
    assert moe.aux.requires_grad and moe.last_indices.shape == (5, 2)
    dense = V.DenseFeedForward(8, 12)
    assert V.active_parameters(dense) == 8 * 12 + 12 + 12 * 8 + 8
    assert V.active_parameters(moe) == 2 * (8 * 6 + 6 + 6 * 8 + 8) + 8 * 4


def test_linear_attention_forms_agree_with_the_quadratic_form():
    g = torch.Generator().manual_seed(1)
    n, d = 70, 6
    q, k = V.feature_map(torch.randn(n, d, generator=g)), V.feature_map(torch.randn(n, d, generator=g))
    v = torch.randn(n, 3, generator=g)
    a = (q @ k.T).tril()
    want = a / a.sum(-1, keepdim=True) @ v
    assert torch.allclose(V.causal_linear_attention(q, k, v), want, atol=1e-5)
    assert torch.allclose(V.chunked_linear_attention(q, k, v, chunk=16), want, atol=1e-5)


def test_selective_scan_is_causal_and_decays():
    x, delta, A, B, C = V.ssm_inputs(20, 4, 3, seed=0)
    y = V.selective_scan(x, delta, A, B, C)
    x2 = x.clone()
    x2[10:] += 5.0
    y2 = V.selective_scan(x2, delta, A, B, C)
    assert torch.allclose(y[:10], y2[:10]) and not torch.allclose(y[10:], y2[10:])
    # one channel, one state, constant delta: an exponential moving filter of the input
    one = V.selective_scan(torch.tensor([[1.0], [0.0], [0.0]]), torch.full((3, 1), 0.5), torch.tensor([[-2.0]]),
                           torch.ones(3, 1), torch.ones(3, 1))
    assert torch.allclose(one.flatten(), torch.tensor([0.5, 0.5 * math.exp(-1), 0.5 * math.exp(-2)]))


def test_sliding_window_mask_matches_sdpa_causal_when_wide():
    m = V.sliding_window_mask(5, 2)
    assert m.tolist()[4] == [False, False, False, True, True] and m.tolist()[0] == [True, False, False, False, False]
    q, k, v = (torch.randn(1, 9, 4) for _ in range(3))
    assert torch.allclose(F.scaled_dot_product_attention(q, k, v, attn_mask=V.sliding_window_mask(9, 9)),
                          F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)
    assert torch.allclose(V.softmax_attention(q[0], k[0], v[0]),
                          F.scaled_dot_product_attention(q, k, v, is_causal=True)[0], atol=1e-5)
    q, k, v = (torch.randn(50, 4) for _ in range(3))
    for w in (1, 7, 16, 64):
        want = F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=V.sliding_window_mask(50, w))[0]
        assert torch.allclose(V.banded_attention(q, k, v, w), want, atol=1e-5), w


def test_peak_bytes_sees_the_score_matrix():
    q = torch.randn(512, 8)
    att = V.peak_bytes(V.softmax_attention, q, q, q)
    assert att >= 512 * 512 * 4 * 2   # the scores and their softmax at least
    lin = V.peak_bytes(lambda a, b, c: V.chunked_linear_attention(V.feature_map(a), V.feature_map(b), c), q, q, q)
    assert lin < att / 4
    assert V.kv_cache_bytes(1000, layers=2, kv_heads=3, head_dim=4) == 2 * 2 * 3 * 4 * 1000 * 2
    assert V.kv_cache_bytes(1000, layers=2, kv_heads=3, head_dim=4, window=10) == 2 * 2 * 3 * 4 * 10 * 2


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny models: two threads only wait for each other (and for a busy machine)
    yield
    torch.set_num_threads(n)


def test_moe_and_dense_train_on_the_zoo_text(one_thread):
    data = V.char_data(n_train=20_000, n_test=2_000)
    assert data.vocab > 30 and len(data.train) == 20_000
    torch.manual_seed(0)
    dense = V.train_lm(V.CharLM(data.vocab, V.DenseFeedForward(32, 64), d=32), data, steps=60, batch=64)
    torch.manual_seed(0)
    moe = V.train_lm(V.CharLM(data.vocab, V.MoEFeedForward(32, 32, 4, 2), d=32), data, steps=60, batch=64)
    for r in (dense, moe):
        assert r.test_loss < math.log(data.vocab) - 1.0, r.test_loss
    assert moe.usage is not None and math.isclose(sum(moe.usage), 1.0, rel_tol=1e-5) and min(moe.usage) > 0.02


# ------------------------------------------------------------------------------------------------ the lab's checks
def _router_unnormalised(logits, k):
    probs = logits.softmax(-1)
    w, idx = probs.topk(k, dim=-1)
    return probs, w, idx


def _router_wrong_order(logits, k):
    probs, w, idx = V.top_k_route(logits, k)
    return probs, w.flip(-1), idx.flip(-1)


def _balance_all_choices(probs, indices, n):
    f = torch.bincount(indices.flatten(), minlength=n).float() / indices.numel()
    return n * (f * probs.mean(0)).sum()


def _balance_no_E(probs, indices, n):
    return V.load_balance_loss(probs, indices, n) / n


def _balance_detached(probs, indices, n):
    return V.load_balance_loss(probs.detach(), indices, n)


def _linear_attention_excludes_self(q, k, v):
    S, z, out = torch.zeros(q.shape[1], v.shape[1]), torch.full((q.shape[1],), 1e-6), []
    for t in range(q.shape[0]):
        out.append(q[t] @ S / (q[t] @ z))
        S, z = S + torch.outer(k[t], v[t]), z + k[t]
    return torch.stack(out)


def _linear_attention_unnormalised(q, k, v):
    return (q @ k.T).tril() @ v


def _scan_without_delta_in_decay(x, delta, A, B, C):
    return V.selective_scan(x, torch.ones_like(delta), A, B, C) * 0 + V.selective_scan(x, delta, A * 0 - 1, B, C)


def _scan_reads_old_state(x, delta, A, B, C):
    h, ys = torch.zeros(x.shape[1], A.shape[1]), []
    for t in range(x.shape[0]):
        ys.append(h @ C[t])
        h = torch.exp(delta[t, :, None] * A) * h + delta[t, :, None] * B[t] * x[t, :, None]
    return torch.stack(ys)


@pytest.mark.parametrize("check, right, wrongs", [
    (V.check_router, V.top_k_route, [_router_unnormalised, _router_wrong_order]),
    (V.check_balance_loss, V.load_balance_loss, [_balance_all_choices, _balance_no_E, _balance_detached]),
    (V.check_linear_attention, V.causal_linear_attention, [_linear_attention_excludes_self, _linear_attention_unnormalised]),
    (V.check_scan, V.selective_scan, [_scan_without_delta_in_decay, _scan_reads_old_state]),
    (V.check_window_mask, V.sliding_window_mask, [lambda n, w: V.sliding_window_mask(n, w + 1),
                                                  lambda n, w: (torch.arange(n)[:, None] - torch.arange(n)[None]).abs() < w,
                                                  lambda n, w: V.sliding_window_mask(n, w).float()]),
])
def test_each_check_accepts_the_kit_and_rejects_mistakes(check, right, wrongs):
    assert check(right)
    for wrong in wrongs:
        assert not check(wrong), wrong


# ------------------------------------------------------------------------------------------------ the lab
@pytest.mark.slow
def test_student_version_of_lab15_runs_end_to_end(run_student_version):
    """`labkit student build`'s version of lab 15 (every exercise `...`) runs to the end in strict mode: each later
    cell uses the kit's own version until the learner writes theirs."""
    report, text = run_student_version(LAB15.name)
    assert report.solutions >= 5, report
    assert "not answered yet" in text and "using the kit's own" in text
    assert "held-out loss" in text
