"""%%attend and labkit.attend: weights, eager switch, truncation, bad input, widget payloads."""
from __future__ import annotations

import numpy as np
import pytest
from IPython.core.error import UsageError

from labkit.errors import LabkitError, LabkitUsageError


def make_micro_model(folder):
    """A 2-layer random Llama with the zoo tokenizer (or a small BPE when the zoo has none yet), saved to disk."""
    from labkit.zoo.train import model_config, new_model

    try:
        from labkit.models import load_tokenizer

        tok = load_tokenizer("tiny")
    except LabkitError:
        from labkit.zoo.corpus import world
        from labkit.zoo.tokenizer import train_tokenizer

        tok = train_tokenizer([world(0).text()], vocab_size=400)
    model = new_model(model_config("micro", tok, max_position_embeddings=64))
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def micro(tmp_path_factory):
    return make_micro_model(tmp_path_factory.mktemp("micro-llama"))


def test_causal_attention_rows_sum_to_one_and_mask(micro):
    from labkit.attend import attend

    r = attend("Mira Vell is a baker in the hills.", micro)
    assert r.kind == "causal-lm" and r.causal
    assert r.attentions.dtype == np.float16
    L, H, n, m = r.attentions.shape
    assert (L, H) == (2, 4) and n == m == len(r.tokens) == len(r.token_ids)
    a = r.attentions.astype(np.float32)
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=2e-3)
    assert np.abs(np.triu(a, k=1)).max() == 0  # a decoder never looks ahead
    assert "".join(r.tokens) == "Mira Vell is a baker in the hills."
    # the model's default kernel (SDPA) returns no weights: the engine switched for this pass and switched back
    assert any("eager" in note for note in r.notes)
    from labkit.models import load

    assert load(micro).model.config._attn_implementation == "sdpa"


def test_weights_match_a_manual_eager_pass(micro):
    import torch

    from labkit.attend import attend
    from labkit.models import load

    r = attend("the old bridge", micro, layer=1, head=2)
    lm = load(micro)
    lm.model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            ref = lm.model(**lm.tokenizer("the old bridge", return_tensors="pt"), output_attentions=True).attentions
    finally:
        lm.model.set_attn_implementation("sdpa")
    np.testing.assert_allclose(r.weights(1, 2), ref[1][0, 2].numpy(), atol=1e-3)
    assert r.top(2, k=1)[0][1] == pytest.approx(float(ref[1][0, 2, 2].max()), abs=1e-3)


def test_encoder_pair_and_text_views():
    from labkit.attend import attend

    r = attend("The cat sat on the mat.\nIt was tired.", "minilm", pair=True, view="model")
    assert r.kind == "encoder" and not r.causal
    assert r.tokens[0] == "[CLS]" and r.tokens[r.pair_start - 1] == "[SEP]" and r.tokens[r.pair_start] == "it"
    assert r.attentions.shape[:2] == (6, 12)
    assert "[CLS]" in repr(r) and "<table" in r._repr_mimebundle_()["text/html"]
    assert np.triu(r.attentions.astype(np.float32), k=1).max() > 0.01  # an encoder looks both ways


def test_truncation_notice(micro):
    from labkit.attend import attend

    r = attend("word " * 300, micro)
    assert r.n_tokens == 64
    assert any("truncated" in n for n in r.notes)
    r = attend("word " * 30, micro, max_tokens=10)
    assert r.n_tokens == 10


def test_bad_input(micro):
    from labkit.attend import attend

    with pytest.raises(LabkitUsageError, match=r"layers 0–1"):
        attend("hello", micro, layer=5)
    with pytest.raises(LabkitUsageError, match=r"heads 0–3"):
        attend("hello", micro, head=-1)
    with pytest.raises(LabkitUsageError, match="no text"):
        attend("   ", micro)
    with pytest.raises(LabkitUsageError, match="encoders"):
        attend("a\nb", micro, pair=True)
    with pytest.raises(LabkitUsageError, match="two sentences"):
        attend("only one line", "minilm", pair=True)
    with pytest.raises(LabkitUsageError, match="Unknown model"):
        attend("hello", "no-such-model")


def test_model_without_attentions_gives_clear_error(micro, monkeypatch):
    from labkit import attend as engine
    from labkit.models import load

    lm = load(micro)

    class NoAttention:  # a model whose forward returns no attention weights
        config = lm.model.config

        def __call__(self, **kw):
            class Out:
                attentions = None
            return Out()

    fake = type(lm)(lm.name, lm.kind, NoAttention(), lm.tokenizer, lm.path, 0)
    monkeypatch.setattr(NoAttention.config, "_attn_implementation", "eager", raising=False)
    with pytest.raises(LabkitError, match="cannot show its attention"):
        engine.attend("hello", fake)


def test_widget_sends_float16_and_one_layer_on_demand(micro):
    from labkit.attend import attend
    from labkit.widgets import payload_bytes
    from labkit.widgets.attention import AttentionWidget

    r = attend("Mira Vell is a baker. " * 3, micro)
    small = r.widget()
    assert small.all_layers and small.data_layer == -1
    assert len(small.data) == r.attentions.size * 2
    assert np.frombuffer(small.data, "<f2").reshape(r.attentions.shape).tolist() == r.attentions.tolist()
    # force the long-input path: one layer at a time, thumbnails for the model view
    big = AttentionWidget.from_result(r, view="head", limit=10)
    assert not big.all_layers and big.data_layer == 0
    assert len(big.data) == r.n_heads * r.n_tokens ** 2 * 2
    big.layer = 1  # what the front end does when another layer is picked
    assert big.data_layer == 1
    np.testing.assert_array_equal(np.frombuffer(big.data, "<f2").reshape(r.attentions.shape[1:]), r.attentions[1])
    model_view = AttentionWidget.from_result(r, view="model", limit=10)
    assert model_view.data == b"" and len(model_view.thumbs) == 2 * 4 * model_view.thumb ** 2
    assert payload_bytes(model_view) < payload_bytes(big)


def test_thumbnails_downsample():
    from labkit.widgets.attention import thumbnails

    a = np.zeros((1, 1, 64, 64), np.float16)
    a[0, 0, np.arange(64), np.arange(64)] = 1  # a diagonal pattern stays a diagonal
    t, s = thumbnails(a, 16)
    assert s == 16 and t.shape == (1, 1, 16, 16)
    assert (np.diag(t[0, 0]) == 255).all() and t[0, 0, 0, 5] == 0


def test_bertviz_views_use_labkits_copies_of_their_scripts(micro, monkeypatch):
    import json

    from labkit import attend as A

    r = A.attend("the old bridge", micro)
    for which in ("head", "model"):
        view = A.bertviz_view(r, which=which)
        assert view.html and "cdnjs" not in view.html and "https://" not in view.html.split("</script>")[-1]
        assert "define('d3'" in view.html and "define('jquery'" in view.html and "RequireJS 2.3.6" in view.html
        assert view._repr_mimebundle_()["text/html"] == view.html
    versions = json.loads((A.VENDOR / "VERSIONS.json").read_text())
    import hashlib
    for name, info in versions.items():   # the shipped copies are the pinned ones
        assert hashlib.sha256((A.VENDOR / name).read_bytes()).hexdigest() == info["sha256"], name
    # bertviz missing: labkit's own view, with the reason on top
    monkeypatch.setattr(A, "bertviz_html", lambda *a, **k: (_ for _ in ()).throw(A.LabkitError("bertviz is not installed")))
    off = A.bertviz_view(r)
    bundle = off._repr_mimebundle_()
    assert off.html is None and "not installed" in bundle["text/plain"] and "labkit" in bundle["text/html"]
    with pytest.raises(A.LabkitError, match="no longer loads require.js"):
        A.offline_bertviz("<div>no script</div>")


def test_bertviz_neuron_view_offline_on_minilm(micro):
    """bertviz's neuron view (queries and keys of one head) runs minilm's own weights in bertviz's BERT: the
    attention it draws is labkit's attention of that head, and it needs nothing from the network."""
    import json
    import re

    import numpy as np

    from labkit import attend as A

    r = A.attend("The cat sat on the mat.\nIt was tired.", "minilm", layer=2, head=3, pair=True)
    view = A.bertviz_view(r, which="neuron")
    assert view.html and "cdnjs" not in view.html and "define('d3'" in view.html, view.notice
    params = json.loads(re.search(r"window\.bertviz_params = (\{.*?\});?\n", view.html, re.S).group(1))
    attn = np.array(params["attention"]["all"]["attn"][2][3])
    assert params["attention"]["all"]["queries"] and attn.shape == r.weights(2, 3).shape
    assert np.abs(attn - r.weights(2, 3)).max() < 2e-3  # float16 storage in the result
    off = A.bertviz_view(A.attend("the old bridge", micro), which="neuron")  # a Llama: labkit's view, and why
    assert off.html is None and "BERT-style" in off.notice


def test_magic(ip, micro):
    res = ip.run_cell_magic("attend", f"--model {micro} --layer 1 --view matrix --out att", "the old bridge")
    assert res.layer == 1 and res.view == "matrix" and ip.user_ns["att"] is res
    with pytest.raises(UsageError, match="layers 0–1"):
        ip.run_cell_magic("attend", f"--model {micro} --layer 9", "hello")
    with pytest.raises(UsageError, match="needs the text"):
        ip.run_cell_magic("attend", f"--model {micro}", "  \n")
    with pytest.raises(UsageError, match="invalid choice"):
        ip.run_cell_magic("attend", "--view sideways", "hello")
    view = ip.run_cell_magic("attend", f"--model {micro} --view bertviz", "hello there")
    assert "bertviz" in repr(view)
    view = ip.run_cell_magic("attend", "--model minilm --view neuron --layer 1 --head 2", "hello there")
    assert "neuron_view" in view.notice and view.html


def test_magic_text_that_is_not_valid_unicode(ip, micro):
    """A lone surrogate (or an undecodable byte) is replaced, with a note, instead of failing in the tokenizer."""
    res = ip.run_cell_magic("attend", f"--model {micro}", "the old \ud800 bridge \udcff")
    assert any("not valid Unicode" in n for n in res.notes) and "\ud800" not in "".join(res.tokens)
