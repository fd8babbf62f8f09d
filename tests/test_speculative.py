"""labkit.speculative: greedy speculative decoding gives exactly the target's greedy output."""
from __future__ import annotations

import pytest


def _llama(seed, hidden=32, layers=1, vocab=97):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


def test_same_output_as_greedy_and_an_honest_acceptance_rate():
    import torch

    from labkit.speculative import speculative_generate

    target, draft = _llama(0, 48, 2), _llama(1)
    ids = torch.tensor([[5, 17, 3, 88, 41]])
    with torch.no_grad():
        greedy = target.generate(ids, max_new_tokens=20, do_sample=False, pad_token_id=0)
    for k in (1, 3, 5):
        out, st = speculative_generate(target, draft, ids, max_new_tokens=20, k=k)
        assert out.tolist() == greedy.tolist(), k
        assert st.new_tokens == 20 and 0 <= st.accepted <= st.proposed
        assert st.target_calls == pytest.approx(st.new_tokens - st.accepted, abs=k)  # one pass per rejection
    # a draft that is the target itself is always right: every proposal kept, k + 1 tokens per target pass
    out, st = speculative_generate(target, target, ids, max_new_tokens=20, k=4)
    assert out.tolist() == greedy.tolist() and st.acceptance_rate == 1.0 and st.target_calls == 4


def test_a_draft_with_another_vocabulary_is_refused():
    import torch

    from labkit.errors import LabkitUsageError
    from labkit.speculative import speculative_generate

    with pytest.raises(LabkitUsageError, match="tokenizer"):
        speculative_generate(_llama(0), _llama(1, vocab=50), torch.tensor([[1, 2]]))
