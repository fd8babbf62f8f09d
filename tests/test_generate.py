"""%%generate and labkit.generate: streaming, sampling settings, step view, logit lens, KV timing, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from IPython.core.error import UsageError

from labkit.errors import LabkitUsageError


@pytest.fixture(scope="session")
def micro(tmp_path_factory):
    from test_attend import make_micro_model

    return make_micro_model(tmp_path_factory.mktemp("micro-llama-gen"))


def _reference(micro, prompt, **kw):
    import torch

    from labkit.models import load

    lm = load(micro)
    enc = lm.tokenizer(prompt, return_tensors="pt")
    torch.manual_seed(kw.pop("seed", 0))
    with torch.no_grad():
        out = lm.model.generate(**enc, pad_token_id=lm.model.generation_config.pad_token_id, **kw)
    return out[0, enc["input_ids"].shape[1]:].tolist()


def test_greedy_matches_model_generate_and_streams(micro):
    from labkit.generate import generate

    chunks = []
    r = generate("Mira Vell is a", micro, max_new_tokens=12, temperature=0, on_text=chunks.append)
    assert r.token_ids == _reference(micro, "Mira Vell is a", max_new_tokens=12, do_sample=False)
    assert len(chunks) > 1 and "".join(chunks) == r.text  # text arrived in pieces, all of it
    assert r.n_new_tokens == 12 and r.stop == "length" and r.tokens_per_s > 0


def test_sampling_is_seeded_and_matches_hf(micro):
    from labkit.generate import generate

    a = generate("the old", micro, max_new_tokens=10, temperature=0.9, top_k=20, top_p=0.95, seed=3)
    b = generate("the old", micro, max_new_tokens=10, temperature=0.9, top_k=20, top_p=0.95, seed=3)
    c = generate("the old", micro, max_new_tokens=10, temperature=0.9, top_k=20, top_p=0.95, seed=4)
    assert a.token_ids == b.token_ids != c.token_ids
    assert a.token_ids == _reference(micro, "the old", max_new_tokens=10, do_sample=True, temperature=0.9, top_k=20,
                                     top_p=0.95, seed=3)


def test_step_view_probabilities(micro):
    from labkit.generate import TOP_N, generate

    r = generate("Mira", micro, max_new_tokens=6, temperature=0.7, top_k=5, step=True)
    assert len(r.steps) == 6
    for s in r.steps:
        assert len(s.top_ids) == TOP_N
        assert sum(s.top_probs) == pytest.approx(1.0, abs=1e-4)  # top-5 of the top-20 carry all the mass
        assert sum(p > 0 for p in s.top_probs) == 5
        assert s.rank < 5 and s.prob > 0  # a sampled token survived the top-k cut
        assert all(x >= y for x, y in zip(s.top_raw, s.top_raw[1:]))
    greedy = generate("Mira", micro, max_new_tokens=4, temperature=0, step=True)
    assert all(s.rank == 0 for s in greedy.steps)


def test_logit_lens_last_layer_is_the_model_output(micro):
    import torch

    from labkit.generate import logit_lens
    from labkit.models import load

    rows = logit_lens("Mira Vell is a", micro)
    assert [r.layer for r in rows] == ["embeddings", "layer 0", "layer 1 (output)"]
    lm = load(micro)
    with torch.no_grad():
        logits = lm.model(**lm.tokenizer("Mira Vell is a", return_tensors="pt")).logits[0, -1]
    probs = torch.softmax(logits, -1)
    assert rows[-1].probs[0] == pytest.approx(float(probs.max()), rel=1e-4)
    assert rows[-1].tokens[0] == lm.tokenizer.decode([int(probs.argmax())])


def test_beams_and_kv_timing(micro):
    from labkit.generate import generate, kv_cache_timing

    r = generate("the", micro, max_new_tokens=5, beams=3, temperature=0, on_text=lambda t: None)
    assert r.token_ids == _reference(micro, "the", max_new_tokens=5, num_beams=3, do_sample=False)
    assert any("beam" in n for n in r.notes)
    kv = kv_cache_timing("the old bridge", micro, max_new_tokens=8)
    assert kv.new_tokens == 8 and kv.with_cache_s > 0 and kv.without_cache_s > 0


def test_bad_input(micro):
    from labkit.generate import generate

    for kw, msg in [(dict(top_p=0), r"`top_p` must be in \(0, 1\]"), (dict(top_p=1.5), "top_p"),
                    (dict(temperature=-1), "temperature"), (dict(top_k=0), "top_k"),
                    (dict(max_new_tokens=0), "max_new_tokens"), (dict(beams=2, step=True), "beams")]:
        with pytest.raises(LabkitUsageError, match=msg):
            generate("hello", micro, **kw)
    with pytest.raises(LabkitUsageError, match="encoder"):
        generate("hello", "minilm")
    with pytest.raises(LabkitUsageError, match="no prompt"):
        generate("  ", micro)


def test_long_prompt_keeps_the_end(micro):
    from labkit.generate import generate

    r = generate("word " * 200, micro, max_new_tokens=4, temperature=0)
    assert r.n_prompt_tokens == 60 and any("last 60 tokens" in n for n in r.notes)


def test_widget_state_and_resample(micro):
    from labkit.generate import generate

    r = generate("Mira", micro, max_new_tokens=5, temperature=1.0, step=True)
    w = r.widget()
    assert w.n_new == 5 and w.top_n == 20
    assert np.frombuffer(w.top_probs, "<f4").shape == (5 * 20,)
    assert len(w.lens_names) == 3 and np.frombuffer(w.lens_probs, "<f4").shape == (5 * 3 * 3,)
    before = w.version
    w.top_k = 1  # what the slider does: the kernel generates again, greedy-like now
    assert w.version == before + 1 and w.result.settings.top_k == 1
    assert all(s.rank == 0 for s in w.result.steps)
    w.top_p = 0.5
    assert w.result.settings.top_p == 0.5 and w.error == ""


def test_magic_streams_and_returns(ip, micro, capsys):
    res = ip.run_cell_magic("generate", f"--model {micro} --max-new-tokens 6 --temperature 0 --out g", "the old")
    assert res.n_new_tokens == 6 and ip.user_ns["g"] is res
    step = ip.run_cell_magic("generate", f"--model {micro} --max-new-tokens 3 --step --kv-timing", "the")
    assert step.steps and step.kv and "KV cache" in repr(step)
    with pytest.raises(UsageError, match=r"\(0, 1\]"):
        ip.run_cell_magic("generate", f"--model {micro} --top-p 2", "the")
    with pytest.raises(UsageError, match="needs a prompt"):
        ip.run_cell_magic("generate", "", "\n  \n")


def test_magic_prompt_that_is_not_valid_unicode(ip, micro):
    res = ip.run_cell_magic("generate", f"--model {micro} --max-new-tokens 2 --temperature 0", "the \ud800 old")
    assert res.n_new_tokens == 2 and any("not valid Unicode" in n for n in res.notes) and "\ud800" not in res.prompt


def test_on_progress_reports_tokens(micro):
    from labkit.generate import generate

    seen = []
    r = generate("the old", micro, max_new_tokens=5, temperature=0, on_progress=seen.append)
    assert seen and all(p.kind == "token" and p.total == 5 for p in seen)
    assert seen[-1].state == "done" and seen[-1].done == r.n_new_tokens and seen[-1].item == r.text
    assert "".join(p.item for p in seen[:-1]) == r.text  # the streamed pieces add up to the text
