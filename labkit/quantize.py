"""Lab 13's engine: weight quantization of the zoo's Llama models, measured.

    q, scale, zero = quantize(w, bits=4, symmetric=False, group=32)   # the kit's own (the learner writes theirs)
    w_hat = dequantize(q, scale, zero)
    m4 = quantized_copy(model, lambda name, w: fake_quant(w, 4, group=32))   # weight-only fake quantization
    perplexity(m4, rows)

Granularity is given by ``group``: ``None`` one scale for the whole tensor, ``-1`` one per output channel (row of
``[out, in]``), ``g > 0`` one per block of ``g`` consecutive values of a row. In every case the blocks are
contiguous in row-major order, so ``scale`` and ``zero`` are 1-D (one entry per block) and a block holds
``q.numel() // scale.numel()`` values: ``dequantize`` needs no other argument.

Beyond round-to-nearest ("naive"): ``awq`` (activation-aware per-input-channel scaling, searched on calibration
activations, as AWQ/SmoothQuant do) and ``gptq`` (column-by-column rounding that pushes each column's error onto
the columns not yet quantized, weighted by the inverse Hessian ``X^T X`` of the calibration inputs). Both are the
simple forms of the papers: calibration inputs are taken from the full-precision model in one pass (the GPTQ
reference quantizes layer by layer, feeding each layer the already-quantized outputs), and AWQ's ``1/s`` is kept in
the weight rather than folded into the previous RMSNorm (the same numbers for weight-only fake quantization).

``gguf_sweep`` exports a model at several GGUF types (``labkit.gguf.export_gguf``) and measures each file in
llama.cpp: size, perplexity on the same token rows (``eval`` + ``scores``, as ``labkit.gguf.parity``) and decoding
speed. ``dynamic_int8`` is PyTorch's ``quantize_dynamic``. ``train_quantized`` runs quantization-aware training
(fake quantization with a straight-through estimator) or plain fine-tuning for a few steps.
"""
from __future__ import annotations

import copy
import io
import math
import time
from pathlib import Path

import torch

LAYER_KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ------------------------------------------------------------------------------------------- the quantizer
def blocks(w: torch.Tensor, group=None) -> torch.Tensor:
    """``w`` viewed as one row per block: the whole tensor (None), one row per output channel (-1), or blocks of
    ``group`` consecutive values along each row."""
    if group is None:
        return w.reshape(1, -1)
    if group == -1:
        return w.reshape(w.shape[0], -1)
    if w.shape[-1] % group:
        raise ValueError(f"a row of {w.shape[-1]} values does not split into groups of {group}")
    return w.reshape(-1, int(group))


def quantize(w: torch.Tensor, bits: int, symmetric: bool = True, group=None):
    """Round ``w`` to ``bits``-bit integers. Symmetric: q in [-(2^(b-1)-1), 2^(b-1)-1], scale = max|w| / qmax,
    zero 0. Asymmetric: q in [0, 2^b-1] over the block's range [min, max] widened to include 0, zero the integer
    that stands for 0.0. Returns ``(q, scale, zero)``: q in w's shape, scale and zero one per block."""
    b = blocks(w.detach().float(), group)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = (b.abs().amax(dim=1) / qmax).clamp_min(1e-12)
        zero = torch.zeros_like(scale)
        q = torch.clamp(torch.round(b / scale[:, None]), -qmax, qmax)
    else:
        qmax = 2 ** bits - 1
        lo, hi = b.amin(dim=1).clamp_max(0), b.amax(dim=1).clamp_min(0)
        scale = ((hi - lo) / qmax).clamp_min(1e-12)
        zero = torch.clamp(torch.round(-lo / scale), 0, qmax)
        q = torch.clamp(torch.round(b / scale[:, None]) + zero[:, None], 0, qmax)
    return q.reshape(w.shape), scale, zero


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Back to floats: ``(q - zero) * scale``, block by block."""
    b = q.float().reshape(scale.numel(), -1)
    return ((b - zero.reshape(-1, 1)) * scale.reshape(-1, 1)).reshape(q.shape)


def fake_quant(w: torch.Tensor, bits: int, symmetric: bool = True, group=None, *, quantize=quantize,
               dequantize=dequantize) -> torch.Tensor:
    """Quantize then dequantize: the float weights a ``bits``-bit model computes with."""
    return dequantize(*quantize(w, bits, symmetric, group)).reshape(w.shape).to(w.dtype)


def ste(w: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
    """Straight-through estimator: the value of ``w_q``, the gradient of ``w``."""
    return w + (w_q - w).detach()


def storage_bits(bits: int, symmetric: bool, group, shape=(192, 512)) -> float:
    """Bits per weight including the scales (fp16) and zero points (``bits``) of each block."""
    n = shape[0] * shape[1]
    nblocks = 1 if group is None else shape[0] if group == -1 else n // group
    return bits + nblocks * (16 + (0 if symmetric else bits)) / n


# ------------------------------------------------------------------------------------------- models and data
def linear_layers(model) -> dict:
    """The Linear layers of the decoder blocks (attention and MLP): the weights quantized here. The embedding
    (tied with the output head) and the norms stay in float, as most weight-only schemes keep them."""
    return {n: m for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in LAYER_KINDS}


def quantized_copy(model, fn):
    """A copy of ``model`` whose decoder Linear weights are ``fn(name, weight)``."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for name, lin in linear_layers(m).items():
            lin.weight.copy_(fn(name, lin.weight.detach().clone()))
    return m.eval()


def pack(tok, texts, n_rows: int, seq_len: int = 64) -> torch.Tensor:
    """Concatenate texts (each after the end-of-text token) and cut ``n_rows`` rows of ``seq_len`` token ids."""
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    buf: list[int] = []
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        buf += ids if ids[:1] == [eot] else [eot] + ids   # the world's documents already start with it
        if len(buf) >= n_rows * seq_len:
            break
    if len(buf) < n_rows * seq_len:
        raise ValueError(f"{len(buf)} tokens: not enough text for {n_rows} rows of {seq_len}")
    return torch.tensor(buf[: n_rows * seq_len]).reshape(n_rows, seq_len)


def world_texts(split: str = "val", seed: int = 0):
    """Documents of the zoo's world (the text tiny-base was trained on; ``val`` = documents it never read)."""
    from .zoo.corpus import Corpus

    return Corpus(seed=seed).pretrain_docs(split)


def outside_texts(n: int = 80, seed: int = 0) -> list[str]:
    """Ordinary English built apart from the world: the zoo v2 reading passages of the held-out generator
    (faker names from locales never trained on, wordfreq vocabulary), which tiny-base never saw."""
    from .zoo.reading import Reading

    return [x["context"] for x in Reading(seed, heldout=True).context_qa(n)]


def perplexity(model, rows: torch.Tensor, batch: int = 16) -> float:
    """exp(mean next-token cross-entropy) over every position of the rows."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            r = rows[i:i + batch]
            logits = model(r).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), r[:, 1:].reshape(-1),
                                                    reduction="sum")
            total += float(nll)
            count += r[:, 1:].numel()
    return math.exp(total / count)


def log_probs(model, rows: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Next-token log-probabilities at every position but the last: [rows, seq_len - 1, vocab]."""
    with torch.no_grad():
        return torch.cat([torch.log_softmax(model(rows[i:i + batch]).logits[:, :-1].float(), -1)
                          for i in range(0, len(rows), batch)])


def drift(ref_logp: torch.Tensor, model, rows: torch.Tensor) -> dict:
    """How far ``model``'s predictions moved from the reference's (``log_probs`` of the float model) on ``rows``:
    mean KL(reference || model) in nats per token, the share of positions whose top token is unchanged, and the
    perplexity. Unlike perplexity, the KL and the agreement mean something even on text the model predicts badly."""
    logp = log_probs(model, rows)
    kl = float((ref_logp.exp() * (ref_logp - logp)).sum(-1).mean())
    agree = float((ref_logp.argmax(-1) == logp.argmax(-1)).float().mean())
    nll = -logp.gather(-1, rows[:, 1:, None]).mean()
    return {"kl": kl, "agree": agree, "ppl": math.exp(float(nll))}


def calibrate(model, rows: torch.Tensor) -> dict:
    """The inputs each decoder Linear sees on ``rows``: name -> [tokens, in_features]."""
    seen: dict = {}
    hooks = [lin.register_forward_hook(lambda mod, args, out, n=n: seen.setdefault(n, []).append(
        args[0].detach().reshape(-1, args[0].shape[-1]))) for n, lin in linear_layers(model).items()]
    try:
        with torch.no_grad():
            model(rows)
    finally:
        for h in hooks:
            h.remove()
    return {n: torch.cat(v) for n, v in seen.items()}


# ------------------------------------------------------------------------------------------- beyond rounding
def awq(w: torch.Tensor, x: torch.Tensor, bits: int, symmetric: bool = True, group=None, grid: int = 11,
        fq=fake_quant):
    """Activation-aware scaling: multiply input channel j of ``w`` by ``s_j = mean|x_j|^alpha`` before rounding
    (and divide after), so the channels that carry large activations lose less; ``alpha`` in [0, 1) is searched
    to minimise the layer's output error on the calibration inputs ``x``. Returns (w_hat, alpha)."""
    w, x = w.float(), x.float()
    ref = x @ w.T
    act = x.abs().mean(0).clamp_min(1e-6)
    best = (float("inf"), None, 0.0)
    for k in range(grid):
        alpha = k / grid
        s = act ** alpha
        s = s / (s.max() * s.min()).sqrt()
        w_hat = fq(w * s, bits, symmetric, group) / s
        err = float(((x @ w_hat.T - ref) ** 2).mean())
        if err < best[0]:
            best = (err, w_hat, alpha)
    return best[1], best[2]


def gptq(w: torch.Tensor, x: torch.Tensor, bits: int, symmetric: bool = True, group=None, damp: float = 0.01):
    """GPTQ (Frantar et al., 2022): quantize the columns of ``w`` one at a time and spread each column's rounding
    error over the columns still to come, in proportion to the inverse Hessian ``H = X^T X`` of the layer's
    inputs, so that the layer's *output* on the calibration inputs changes as little as possible. Group scales are
    set from the (already updated) weights when a group starts, as the reference implementation does."""
    W = w.detach().float().clone()
    n_out, n_in = W.shape
    H = x.float().T @ x.float() / len(x)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damp * torch.diag(H).mean() * torch.eye(n_in)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    scale = zero = None
    if group is None or group == -1:
        _, scale, zero = quantize(W, bits, symmetric, group)
        if group is None:
            scale, zero = scale.expand(n_out), zero.expand(n_out)
    qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)
    for i in range(n_in):
        if group not in (None, -1) and i % group == 0:
            _, scale, zero = quantize(W[:, i:i + group], bits, symmetric, -1)
        col = W[:, i]
        q = (torch.clamp(torch.round(col / scale) + zero, qmin, qmax) - zero) * scale
        Q[:, i] = q
        err = (col - q) / Hinv[i, i]
        W[:, i + 1:] -= err[:, None] * Hinv[i, i + 1:][None, :]
    return Q.to(w.dtype)


def quantize_model(model, method: str, bits: int, symmetric: bool = True, group=None, calib=None, fq=fake_quant):
    """A copy of ``model`` with every decoder Linear quantized by ``naive`` rounding, ``awq`` or ``gptq``
    (``calib``: the inputs from ``calibrate``)."""
    if method == "naive":
        return quantized_copy(model, lambda n, w: fq(w, bits, symmetric, group))
    if method == "awq":
        return quantized_copy(model, lambda n, w: awq(w, calib[n], bits, symmetric, group, fq=fq)[0])
    if method == "gptq":
        return quantized_copy(model, lambda n, w: gptq(w, calib[n], bits, symmetric, group))
    raise ValueError(f"method {method!r}: naive, awq or gptq")


# ------------------------------------------------------------------------------------------- size and speed
def state_bytes(model) -> int:
    """Bytes of the serialized state dict (what ``torch.save`` writes)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def dynamic_int8(model):
    """PyTorch's dynamic quantization: every Linear's weight stored as int8 (one scale per tensor), its input
    quantized on the fly at each call, int8 matmul (fbgemm/qnnpack). A copy; ``model`` is unchanged."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao's eager quantization announces its move to torchao
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


def forward_speed(model, rows: torch.Tensor, repeats: int = 3) -> float:
    """Tokens per second through the forward pass over ``rows`` (best of ``repeats``)."""
    best = float("inf")
    with torch.no_grad():
        model(rows[:1])
        for _ in range(repeats):
            t = time.perf_counter()
            model(rows)
            best = min(best, time.perf_counter() - t)
    return rows.numel() / best


def gguf_measure(path, rows: torch.Tensor, gen_tokens: int = 64, repeats: int = 3) -> dict:
    """A GGUF file in llama.cpp: perplexity over ``rows`` (each row evaluated from a fresh context, logits of every
    position) and greedy decoding speed, one token at a time (best of ``repeats`` runs)."""
    import numpy as np

    from . import models

    llm = models.load(f"gguf:{path}", n_ctx=max(128, rows.shape[1] + gen_tokens), logits_all=True).model
    total, count = 0.0, 0
    for r in rows.tolist():
        llm.reset()
        llm.eval(r)
        s = np.asarray(llm.scores[: len(r) - 1], dtype=np.float64)
        m = s.max(-1, keepdims=True)
        logz = (m + np.log(np.exp(s - m).sum(-1, keepdims=True)))[:, 0]
        total += float((logz - s[np.arange(len(r) - 1), r[1:]]).sum())
        count += len(r) - 1
    best = float("inf")
    for _ in range(repeats):  # the best of a few runs: a shared CPU slows some of them down
        llm.reset()
        llm.eval(rows[0, :8].tolist())
        t = time.perf_counter()
        for _ in range(gen_tokens):
            llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
        best = min(best, time.perf_counter() - t)
    speed = gen_tokens / best
    llm.close()  # free llama.cpp's model and context now, not at interpreter exit
    return {"ppl": math.exp(total / count), "tok_s": speed}


def gguf_sweep(model: str, rows: torch.Tensor, folder, qtypes=("f32", "f16", "q8_0", "q4_0")) -> list[dict]:
    """Export ``model`` (a zoo name or a saved folder) at each GGUF type into ``folder`` and measure each file
    (size, perplexity, speed)."""
    from .gguf import export_gguf

    out = []
    for qt in qtypes:
        ex = export_gguf(model, Path(folder) / f"model-{qt}.gguf", qtype=qt)
        out.append({"qtype": qt, "bytes": ex.bytes, **gguf_measure(ex.path, rows)})
    return out


def torch_decode_speed(model, prompt: torch.Tensor, gen_tokens: int = 64) -> float:
    """Greedy decoding speed of the PyTorch model with its KV cache, for comparison with llama.cpp."""
    with torch.no_grad():
        model.generate(prompt, max_new_tokens=2, min_new_tokens=2, do_sample=False)
        t = time.perf_counter()
        model.generate(prompt, max_new_tokens=gen_tokens, min_new_tokens=gen_tokens, do_sample=False)
    return gen_tokens / (time.perf_counter() - t)


# ------------------------------------------------------------------------------------------- QAT
class _FakeQuant(torch.nn.Module):
    def __init__(self, fq, st):
        super().__init__()
        self.fq, self.st = fq, st

    def forward(self, w):
        return self.st(w, self.fq(w.detach()))


def train_quantized(model, rows: torch.Tensor, steps: int, fq=None, st=ste, lr: float = 1e-3, batch: int = 8,
                    seed: int = 0):
    """Fine-tune a copy of ``model`` on ``rows`` for ``steps`` AdamW steps. With ``fq`` (a function w -> fake
    quantized w), every decoder Linear computes with ``fq(w)`` in the forward pass and passes the gradient
    straight through to the float weights (``st``): quantization-aware training. Returns the copy with its weights
    fake-quantized (QAT) or as trained (``fq=None``), and the losses."""
    from torch.nn.utils import parametrize

    torch.manual_seed(seed)
    m = copy.deepcopy(model).train()
    if fq is not None:
        for lin in linear_layers(m).values():
            parametrize.register_parametrization(lin, "weight", _FakeQuant(fq, st))
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(rows), (batch,), generator=g)
        loss = m(rows[idx], labels=rows[idx]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    if fq is not None:
        for lin in linear_layers(m).values():
            parametrize.remove_parametrizations(lin, "weight", leave_parametrized=True)
    return m.eval(), losses
