"""Lab 14's engine (labkit.inference): the KV cache against transformers' own, speculative decoding against plain
greedy, the batching simulator, attention kernels, KV-memory arithmetic, and the student version of the lab."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from labkit import inference as inf
from labkit.errors import LabkitUsageError

ROOT = Path(__file__).resolve().parents[1]
LAB14 = ROOT / "labs" / "14_inference_optimization.ipynb"


@pytest.fixture(scope="module")
def zoo():
    import torch

    import labkit.models
    from labkit.zoo import formats as F

    torch.set_num_threads(1)
    tgt, dr = labkit.models.load("tiny-chat-v2"), labkit.models.load("tiny-draft")
    tok = tgt.tokenizer
    prompt = F.format_chat([{"role": "user", "content": "Context: Ada Lind has lived in Porto for years.\n"
                                                          "Question: Where does Ada Lind live?"}],
                           add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    return tgt.model, dr.model, ids, [tok.convert_tokens_to_ids(F.END)]


def test_kv_cache_decoding_matches_transformers(zoo):
    import torch

    model, _, ids, _ = zoo
    ours, logits, cache = inf.greedy_with_cache(model, ids, 12)
    ref = inf.hf_greedy(model, ids, 12)
    assert torch.equal(ours, ref.sequences)
    assert (logits - torch.stack([l[0] for l in ref.logits])).abs().max() < 1e-4
    hf = inf.hf_cache_tensors(ref)
    assert len(cache) == ids.shape[1] + 11 and len(hf) == len(cache.keys)
    for (K, V), k, v in zip(hf, cache.keys, cache.values):
        assert torch.allclose(k, K[:, :, :len(cache)], atol=1e-5) and torch.allclose(v, V[:, :, :len(cache)], atol=1e-5)
    assert cache.nbytes == len(cache) * inf.kv_bytes_per_token(model.config) == 2048 * len(cache)
    assert torch.equal(inf.greedy_no_cache(model, ids, 12), ours)


def test_a_kv_cache_without_the_causal_mask_is_caught(zoo):
    """The lab's check can fail: attention that lets prompt tokens see later ones gives other logits."""
    import torch
    import torch.nn.functional as F

    model, _, ids, _ = zoo

    def no_mask(q, k, v, cache, layer):
        cache.keys[layer] = torch.cat([cache.keys[layer], k], dim=2)
        cache.values[layer] = torch.cat([cache.values[layer], v], dim=2)
        rep = q.shape[1] // k.shape[1]
        return F.scaled_dot_product_attention(q, inf.repeat_kv(cache.keys[layer], rep),
                                              inf.repeat_kv(cache.values[layer], rep))

    _, logits, _ = inf.greedy_with_cache(model, ids, 4, attend=no_mask)
    ref = inf.hf_greedy(model, ids, 4)
    assert (logits - torch.stack([l[0] for l in ref.logits])).abs().max() > 1e-2

    def forgets(q, k, v, cache, layer):  # attends but never stores
        return inf.attend_with_cache(q, k, v, inf.KVCache(model.config), layer)

    with pytest.raises(LabkitUsageError, match="must add"):
        inf.greedy_with_cache(model, ids, 2, attend=forgets)


def test_timing_helpers_count_tokens(zoo):
    model, _, ids, _ = zoo
    t = inf.time_to_n_tokens(lambda c: inf.greedy_with_cache(model, ids, 6, clock=c), (1, 3, 6))
    assert 0 < t[0] <= t[1] <= t[2]
    t = inf.time_to_n_tokens(lambda c: inf.hf_greedy(model, ids, 5, streamer=inf.StepClock(c)), (1, 5))
    assert 0 < t[0] <= t[1]
    with pytest.raises(LabkitUsageError):
        inf.time_to_n_tokens(lambda c: inf.greedy_no_cache(model, ids, 2, clock=c), (3,))


def test_accept_step_and_speculative_output_equals_greedy(zoo):
    import torch

    assert inf.accept_proposals([5, 6, 7], [5, 6, 7, 8]) == [5, 6, 7, 8]
    assert inf.accept_proposals([5, 6, 7], [5, 9, 7, 8]) == [5, 9]
    assert inf.accept_proposals([5], [4, 1]) == [4]
    model, draft, ids, end = zoo
    spec, st = inf.speculative_decode(model, draft, ids, max_new_tokens=16, k=3, eos=end)
    plain = inf.hf_greedy(model, ids, 16, eos=end).sequences
    assert torch.equal(spec, plain)
    assert st.new_tokens == spec.shape[1] - ids.shape[1] and st.target_calls <= st.new_tokens
    assert 0 <= st.accepted <= st.proposed
    with pytest.raises(LabkitUsageError, match="prefix of the guesses"):
        inf.speculative_decode(model, draft, ids, max_new_tokens=4, k=2, accept=lambda g, c: [c[0] + 1, c[1]])


class _FakeEngine:
    """Deterministic step costs: a decode step of b sequences costs 1 ms + 0.1 ms per sequence."""
    calls = 0

    def prefill(self, n):
        self.calls += 1
        return 1e-3

    def decode(self, b):
        self.calls += 1
        return 1e-3 + 1e-4 * b


def test_batching_policies_serve_everything_and_continuous_wins():
    trace = inf.make_trace(30, rate=2000, out=(2, 40), seed=4)
    assert trace == inf.make_trace(30, rate=2000, out=(2, 40), seed=4)
    out = {}
    for policy in ("static", "dynamic", "continuous"):
        served = inf.simulate(trace, policy, _FakeEngine(), max_batch=4)
        assert [r.rid for r in served] == [r.rid for r in trace]
        assert all(r.arrival <= r.start <= r.finish for r in served), policy
        out[policy] = inf.summarize(served)
    assert out["continuous"]["throughput"] > out["static"]["throughput"]
    assert out["continuous"]["mean_latency"] < out["static"]["mean_latency"]
    with pytest.raises(LabkitUsageError):
        inf.simulate(trace, "fifo", _FakeEngine())


def test_real_engine_runs_forward_passes(zoo):
    engine = inf.Engine(zoo[0], context=8, max_batch=4)
    assert engine.decode(4) > 0 and engine.prefill(6) > 0 and engine.calls == 2


def test_naive_and_sdpa_attention_agree_and_naive_holds_the_scores():
    import torch

    q, k, v = (torch.randn(1, 2, 128, 16) for _ in range(3))
    assert torch.allclose(inf.naive_attention(q, k, v), inf.sdpa_attention(q, k, v), atol=1e-5)
    naive, fused = inf.peak_memory(lambda: inf.naive_attention(q, k, v)), inf.peak_memory(lambda: inf.sdpa_attention(q, k, v))
    assert naive >= 2 * 128 * 128 * 4 > fused  # at least one 2-head score matrix


def test_kv_memory_arithmetic():
    from transformers import LlamaConfig

    c = LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8)
    assert inf.kv_bytes_per_token(c, 2) == 131072  # Llama-3-8B: 128 KiB per token in bf16
    a = inf.allocation([10, 16, 17], max_len=64)
    assert (a.used, a.reserved) == (43, 192)
    p = inf.allocation([10, 16, 17], max_len=64, block=16, per_token=2)
    assert (p.reserved, p.reserved_bytes) == (64, 128) and math.isclose(p.waste, 1 - 43 / 64)


@pytest.mark.slow
def test_student_version_of_lab14_runs_end_to_end(run_student_version):
    """`labkit student build`'s version of lab 14 (every exercise `...`) runs to the end in strict mode on the kit's
    own versions."""
    report, text = run_student_version(LAB14.name)
    assert report.solutions >= 3, report
    assert "not answered yet" in text and "using the kit's own" in text
    assert "the cache is" in text and "paged, blocks of" in text
