"""Lab 13's engine (labkit.quantize): the quantizer against PyTorch's and llama.cpp's, GPTQ and AWQ against
rounding, the straight-through estimator, QAT on a toy model, GGUF measurement, and the student version of the lab."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit import quantize as Q

ROOT = Path(__file__).resolve().parents[1]
LAB13 = ROOT / "labs" / "13_quantization.ipynb"


def _w(seed=0, shape=(24, 64)):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g)
    w[3, 5] = 12.0  # an outlier
    return w


@pytest.mark.parametrize("bits", [8, 4, 3, 2])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("group", [None, -1, 32])
def test_quantizer_agrees_with_torch_fake_quantize(bits, symmetric, group):
    w = _w(bits)
    q, scale, zero = Q.quantize(w, bits, symmetric, group)
    nb = {None: 1, -1: w.shape[0], 32: w.numel() // 32}[group]
    assert q.shape == w.shape and scale.shape == (nb,) and zero.shape == (nb,)
    lo, hi = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)
    assert torch.equal(q, q.round()) and q.min() >= lo and q.max() <= hi
    ref = torch.fake_quantize_per_channel_affine(w.reshape(nb, -1), scale, zero.int(), 0, lo, hi).reshape(w.shape)
    w_hat = Q.dequantize(q, scale, zero)
    assert torch.allclose(w_hat, ref, atol=1e-6)
    err = (w_hat - w).reshape(nb, -1).abs().amax(1)
    assert bool((err <= scale * (0.5 if symmetric else 1.0) + 1e-6).all())  # nothing clipped
    if symmetric:
        assert bool((q.reshape(nb, -1).abs().amax(1) == hi).all())  # the largest |w| lands on the last level


def test_finer_granularity_and_more_bits_lower_the_error():
    w = _w(1, (32, 128))
    err = lambda bits, group: float((Q.fake_quant(w, bits, True, group) - w).norm())
    assert err(4, 32) < err(4, -1) < err(4, None)
    assert err(8, -1) < err(4, -1) / 8 and err(4, -1) < err(3, -1) < err(2, -1)
    assert Q.storage_bits(4, True, 32) == pytest.approx(4.5) and Q.storage_bits(8, True, 32) == pytest.approx(8.5)


def test_symmetric_int8_in_groups_of_32_is_llama_cpp_q8_0():
    import gguf

    w = _w(2, (16, 96))
    T = gguf.GGMLQuantizationType.Q8_0
    q8 = gguf.quants.dequantize(gguf.quants.quantize(w.numpy().astype(np.float32), T), T).reshape(w.shape)
    mine = Q.fake_quant(w, 8, True, 32).numpy()
    _, scale, _ = Q.quantize(w, 8, True, 32)
    step = np.repeat(scale.numpy(), 32).reshape(w.shape)
    assert np.abs(mine - q8).max() <= 0.1 * step.max() and (np.abs(mine - q8) <= 0.1 * step).all()
    q4 = gguf.quants.dequantize(gguf.quants.quantize(w.numpy().astype(np.float32), gguf.GGMLQuantizationType.Q4_0),
                                gguf.GGMLQuantizationType.Q4_0).reshape(w.shape)
    assert np.abs(q4 - w.numpy()).mean() > np.abs(mine - w.numpy()).mean() * 8  # 4 bits are coarser than 8


def _layer(seed=0, n_in=64, n_out=32, tokens=512):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(n_in, n_in, generator=g) / math.sqrt(n_in)
    x = torch.randn(tokens, n_in, generator=g) @ mix  # correlated inputs, as a layer's are
    x[:, :3] *= 8  # a few channels with large activations
    return torch.randn(n_out, n_in, generator=g) * 0.1, x


def test_gptq_and_awq_lower_the_output_error_of_rounding():
    w, x = _layer()
    out = lambda wh: float(((x @ wh.T - x @ w.T) ** 2).mean())
    for bits in (3, 2):
        naive = out(Q.fake_quant(w, bits, True, -1))
        assert out(Q.gptq(w, x, bits, True, -1)) < 0.7 * naive
        assert out(Q.gptq(w, x, bits, False, 32)) < out(Q.fake_quant(w, bits, False, 32))
        w_awq, alpha = Q.awq(w, x, bits, True, -1)
        assert out(w_awq) <= naive and 0 <= alpha < 1
    # GPTQ's result is still on the quantization grid: one scale per row, integers within range
    g = Q.gptq(w, x, 4, True, -1)
    _, scale, _ = Q.quantize(w, 4, True, -1)
    k = g / scale[:, None]
    assert torch.allclose(k, k.round(), atol=1e-4) and k.abs().max() <= 7 + 1e-4


def test_straight_through_estimator():
    w = torch.randn(8, 16, requires_grad=True)
    wq = Q.fake_quant(w.detach(), 3)
    out = Q.ste(w, wq)
    assert torch.allclose(out, wq)
    up = torch.randn(8, 16)
    (grad,) = torch.autograd.grad((out * up).sum(), w)
    assert torch.equal(grad, up)


@pytest.fixture(scope="module")
def toy():
    from labkit.finetune import toy

    torch.set_num_threads(1)  # a micro model: one thread is faster than two that wait for each other
    torch.manual_seed(0)
    m, tok = toy.model("micro", seed=0)
    rows = torch.randint(0, 64, (16, 32)) % 50 + 10  # a small repetitive language the model can learn fast
    rows[:, 1::2] = rows[:, ::2] + 1
    return m.eval(), tok, rows


def test_quantized_copy_perplexity_and_calibration(toy):
    m, tok, rows = toy
    names = Q.linear_layers(m)
    assert names and all(n.split(".")[-1] in Q.LAYER_KINDS for n in names)
    with torch.no_grad():
        ref = math.exp(float(m(rows, labels=rows).loss))
    assert Q.perplexity(m, rows, batch=5) == pytest.approx(ref, rel=1e-4)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m2 = Q.quantized_copy(m, lambda n, w: Q.fake_quant(w, 2, True, -1))
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())  # the original is untouched
    changed = {k for k, v in m2.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {f"{n}.weight" for n in names}
    x = Q.calibrate(m, rows[:4])
    assert set(x) == set(names) and all(v.shape == (4 * 32, names[n].in_features) for n, v in x.items())
    for method in ("naive", "awq", "gptq"):
        assert Q.perplexity(Q.quantize_model(m, method, 4, True, -1, calib=x), rows[:4]) < 2 * ref + 5
    with pytest.raises(ValueError):
        Q.quantize_model(m, "rtn", 4)


def test_qat_trains_through_the_rounding(toy):
    m, tok, rows = toy
    fq = lambda w: Q.fake_quant(w, 2, True, -1)
    qat, losses = Q.train_quantized(m, rows, 15, fq=fq, lr=3e-3, batch=8)
    assert losses[-1] < losses[0] - 0.3
    for lin in Q.linear_layers(qat).values():  # the weights left are on the int2 grid
        assert torch.allclose(lin.weight, fq(lin.weight), atol=1e-6)
    assert Q.perplexity(qat, rows) < Q.perplexity(Q.quantized_copy(m, lambda n, w: fq(w)), rows)


def test_dynamic_int8_is_smaller(toy):
    m, tok, rows = toy
    d = Q.dynamic_int8(m)
    assert Q.state_bytes(d) < Q.state_bytes(m)
    assert Q.perplexity(d, rows) == pytest.approx(Q.perplexity(m, rows), rel=0.1)
    assert Q.forward_speed(d, rows[:2], repeats=1) > 0


def test_gguf_sweep_measures_size_perplexity_and_speed(tmp_path):
    pytest.importorskip("llama_cpp")
    from labkit.finetune import toy

    folder = toy.model_folder(tmp_path / "toy")
    m, tok = toy.model("micro", seed=0)
    rows = torch.randint(10, 200, (2, 24))
    res = Q.gguf_sweep(str(folder), rows, tmp_path, qtypes=("f32", "q8_0"))
    assert [r["qtype"] for r in res] == ["f32", "q8_0"] and res[1]["bytes"] < res[0]["bytes"]
    assert res[0]["ppl"] == pytest.approx(Q.perplexity(m, rows), rel=1e-3)  # llama.cpp = PyTorch at f32
    assert res[1]["ppl"] == pytest.approx(res[0]["ppl"], rel=0.05) and all(r["tok_s"] > 0 for r in res)


def test_pack_cuts_rows_of_token_ids(toy):
    _, tok, _ = toy
    rows = Q.pack(tok, ["a cat sat on the mat"] * 20, n_rows=3, seq_len=8)
    assert rows.shape == (3, 8) and int(rows[0, 0]) == tok.convert_tokens_to_ids("<|endoftext|>")
    with pytest.raises(ValueError):
        Q.pack(tok, ["short"], n_rows=4, seq_len=64)


# ------------------------------------------------------------------------------------------------ the lab
@pytest.mark.slow
def test_student_version_of_lab13_runs_end_to_end(run_student_version):
    """`labkit student build`'s version of lab 13 (every exercise `...`) runs to the end in strict mode: each later
    cell uses the kit's own version until the learner writes theirs."""
    report, text = run_student_version(LAB13.name)
    assert report.solutions >= 3, report
    assert "not answered yet" in text and "using the kit's own" in text
    assert "QAT beats PTQ: correct" in text and "q4_0 is" in text


def test_drift_is_zero_for_the_same_model_and_grows_with_fewer_bits(toy):
    m, tok, rows = toy
    ref = Q.log_probs(m, rows, batch=5)
    same = Q.drift(ref, m, rows)
    assert same["kl"] == pytest.approx(0, abs=1e-6) and same["agree"] == 1.0
    assert same["ppl"] == pytest.approx(Q.perplexity(m, rows), rel=1e-5)
    d4, d2 = (Q.drift(ref, Q.quantized_copy(m, lambda n, w: Q.fake_quant(w, b, True, -1)), rows) for b in (4, 2))
    assert 0 < d4["kl"] < d2["kl"] and d2["agree"] < 1.0
