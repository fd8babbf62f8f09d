"""A small sequence-to-sequence model with attention, for lab 02: dates written ``2024-03-07`` become ``7 march 2024``.

    >>> from labkit.classic import seq2seq as S
    >>> train, test = S.dates(3000, "train"), S.dates(200, "test")      # no test date is a training date
    >>> model = S.Seq2Seq()                                             # additive attention (Bahdanau et al., 2015)
    >>> run = S.train(model, train, steps=300)
    >>> S.greedy(model, "1999-12-28"), S.beam_search(model, "1999-12-28", beam=3)
    >>> S.alignment(model, "1999-12-31")                                 # which input each output character read

The model: a bidirectional GRU encoder over the input characters; a GRU decoder over the output characters; at every
output step the decoder's state *queries* the encoder's outputs with Bahdanau's additive score
``v · tanh(W_q s_t + W_k h_j)``, a softmax over the input positions gives the alignment weights, and their weighted
sum of encoder outputs (the *context vector*) joins the decoder state to predict the next character. The attention is
read after the decoder step (Luong et al., 2015's placement), so training runs every output step in one pass.

``additive_attention`` is the one the lab's learner writes; the model takes any function with its signature
(``Seq2Seq(attention=...)``). ``agrees_with_additive_attention`` is the check: a loop over every (query, key) pair
written as the paper does, plus the properties any attention has. torch is imported inside the functions.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..errors import LabkitUsageError
from ..watch import Progress, Reporter
from .neural import one_thread

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]
SRC_CHARS = "0123456789-"
PAD, BOS, EOS = 0, 1, 2
TGT_CHARS = "".join(sorted(set("0123456789 " + "".join(MONTHS))))
TGT_VOCAB = ["<pad>", "<s>", "</s>"] + list(TGT_CHARS)
_TGT_INDEX = {c: i for i, c in enumerate(TGT_VOCAB)}
_CLASSES: dict[str, Any] = {}


# ------------------------------------------------------------------------------------------------ the task
def format_date(iso: str) -> str:
    """``"2024-03-07"`` -> ``"7 march 2024"``: the transduction the model learns."""
    y, m, d = iso.split("-")
    return f"{int(d)} {MONTHS[int(m) - 1]} {y}"


def _split_of(y: int, m: int, d: int) -> str:
    h = (y * 7919 + m * 104729 + d * 1299709) % 10
    return "test" if h == 0 else "val" if h == 1 else "train"


def dates(n: int, split: str = "train", seed: int = 0) -> list[tuple[str, str]]:
    """``n`` distinct (input, target) pairs from 1900-01-01 to 2099-12-28; the splits never share a date."""
    if split not in ("train", "val", "test"):
        raise LabkitUsageError(f"split must be 'train', 'val' or 'test', not {split!r}")
    rng = random.Random(f"{seed}-{split}")
    out: dict[str, str] = {}
    while len(out) < n:
        y, m, d = rng.randint(1900, 2099), rng.randint(1, 12), rng.randint(1, 28)
        if _split_of(y, m, d) == split:
            iso = f"{y:04d}-{m:02d}-{d:02d}"
            out[iso] = format_date(iso)
    return list(out.items())


def _src_ids(texts: Sequence[str]):
    import torch

    for t in texts:
        bad = set(t) - set(SRC_CHARS)
        if bad or not t:
            raise LabkitUsageError(f"an input is written with the characters {SRC_CHARS!r}, like 2024-03-07; "
                                   f"got {t!r}")
    width = max(len(t) for t in texts)
    ids = torch.zeros(len(texts), width, dtype=torch.long)
    for i, t in enumerate(texts):
        ids[i, :len(t)] = torch.tensor([SRC_CHARS.index(c) + 1 for c in t])  # 0 is padding
    return ids, ids != 0


def _tgt_ids(texts: Sequence[str]):
    import torch

    width = max(len(t) for t in texts) + 1
    inp = torch.zeros(len(texts), width, dtype=torch.long)
    out = torch.zeros(len(texts), width, dtype=torch.long)
    for i, t in enumerate(texts):
        ids = [_TGT_INDEX[c] for c in t]
        inp[i, :len(ids) + 1] = torch.tensor([BOS] + ids)
        out[i, :len(ids) + 1] = torch.tensor(ids + [EOS])
    return inp, out


# ------------------------------------------------------------------------------------------------ attention
def additive_attention(query, keys, mask, W_q, W_k, v):
    """Bahdanau's attention. ``query`` (B, T, dq): decoder states; ``keys`` (B, S, dk): encoder outputs (also the
    values); ``mask`` (B, S) bool, True at real input positions; ``W_q``, ``W_k``, ``v``: ``torch.nn.Linear`` layers
    (dq -> A, dk -> A, A -> 1). Returns (context (B, T, dk), weights (B, T, S))."""
    import torch

    scores = v(torch.tanh(W_q(query).unsqueeze(2) + W_k(keys).unsqueeze(1))).squeeze(-1)  # (B, T, S)
    scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ keys, weights


def _attention_by_pairs(query, keys, mask, W_q, W_k, v):
    """The reference: every (decoder step t, input position j) pair scored one at a time, as the paper writes it,
    a softmax over the real positions only, then the weighted sum."""
    import torch

    B, T, _ = query.shape
    S = keys.shape[1]
    weights = torch.zeros(B, T, S, dtype=query.dtype)
    context = torch.zeros(B, T, keys.shape[2], dtype=query.dtype)
    for b in range(B):
        real = [j for j in range(S) if bool(mask[b, j])]
        for t in range(T):
            e = torch.stack([v(torch.tanh(W_q(query[b, t]) + W_k(keys[b, j]))).reshape(()) for j in real])
            a = torch.exp(e - e.max())
            a = a / a.sum()
            for j, aj in zip(real, a):
                weights[b, t, j] = aj
                context[b, t] += aj * keys[b, j]
    return context, weights


def agrees_with_additive_attention(fn, trials: int = 10, seed: int = 13) -> bool:
    """Does ``fn(query, keys, mask, W_q, W_k, v)`` give the pair-by-pair reference's context and weights, with each
    row of weights summing to 1 and exactly 0 on padding, for sizes the learner never saw?"""
    import torch

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    for t in range(trials):
        B, T, S = 1 + t % 3, 1 + t % 4, 2 + t % 5
        dq, dk, A = 2 + t % 3, 3 + t % 4, 2 + t % 5
        query, keys = torch.randn(B, T, dq, generator=g), torch.randn(B, S, dk, generator=g)
        mask = torch.rand(B, S, generator=g) < 0.7
        mask[:, 0] = True
        if t % 3 == 0:
            mask[:] = True
        W_q, W_k, v = torch.nn.Linear(dq, A, bias=False), torch.nn.Linear(dk, A), torch.nn.Linear(A, 1, bias=False)
        with torch.no_grad():
            want_c, want_w = _attention_by_pairs(query, keys, mask, W_q, W_k, v)
            try:
                got_c, got_w = fn(query.clone(), keys.clone(), mask.clone(), W_q, W_k, v)
            except Exception:  # noqa: BLE001 - a learner's bug is a wrong answer, not a crash
                return False
        if not (isinstance(got_c, torch.Tensor) and isinstance(got_w, torch.Tensor)):
            return False
        if got_c.shape != want_c.shape or got_w.shape != want_w.shape:
            return False
        if not torch.allclose(got_w.sum(-1), torch.ones(B, T), atol=1e-5):
            return False
        if (got_w.masked_select(~mask.unsqueeze(1).expand(B, T, S)).abs() > 0).any():
            return False
        if not (torch.allclose(got_w, want_w, atol=1e-5) and torch.allclose(got_c, want_c, atol=1e-5)):
            return False
    return True


# ------------------------------------------------------------------------------------------------ the model
def _classes():
    if _CLASSES:
        return _CLASSES
    import torch
    from torch import nn

    class _Seq2Seq(nn.Module):
        def __init__(self, hidden: int = 64, embed: int = 32, attn: int = 64, attention: Callable | None = None):
            super().__init__()
            self.src_embed = nn.Embedding(len(SRC_CHARS) + 1, embed, padding_idx=0)
            self.encoder = nn.GRU(embed, hidden, batch_first=True, bidirectional=True)
            self.bridge = nn.Linear(2 * hidden, hidden)
            self.tgt_embed = nn.Embedding(len(TGT_VOCAB), embed, padding_idx=PAD)
            self.decoder = nn.GRU(embed, hidden, batch_first=True)
            self.W_q = nn.Linear(hidden, attn, bias=False)
            self.W_k = nn.Linear(2 * hidden, attn)
            self.v = nn.Linear(attn, 1, bias=False)
            self.out = nn.Linear(hidden + 2 * hidden, len(TGT_VOCAB))
            self.attention = attention or additive_attention
            self.sizes = dict(hidden=hidden, embed=embed, attn=attn)

        def encode(self, src, mask):
            keys, _ = self.encoder(self.src_embed(src))  # (B, S, 2H)
            summary = (keys * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
            return keys, torch.tanh(self.bridge(summary)).unsqueeze(0)  # first decoder state (1, B, H)

        def decode(self, tgt_in, keys, mask, state):
            s, state = self.decoder(self.tgt_embed(tgt_in), state)  # (B, T, H)
            context, weights = self.attention(s, keys, mask, self.W_q, self.W_k, self.v)
            return self.out(torch.cat([s, context], dim=-1)), weights, state

        def forward(self, src, mask, tgt_in):
            keys, state = self.encode(src, mask)
            logits, weights, _ = self.decode(tgt_in, keys, mask, state)
            return logits, weights

    _CLASSES["Seq2Seq"] = _Seq2Seq
    return _CLASSES


def Seq2Seq(hidden: int = 64, embed: int = 32, attn: int = 64, attention: Callable | None = None, seed: int = 0):  # noqa: N802
    """A fresh encoder-decoder; ``attention(query, keys, mask, W_q, W_k, v)`` replaces the kit's attention."""
    import torch

    if attention is not None and not callable(attention):
        raise LabkitUsageError(f"attention must be a function (query, keys, mask, W_q, W_k, v) -> (context, "
                               f"weights), not {type(attention).__name__}")
    torch.manual_seed(seed)
    return _classes()["Seq2Seq"](hidden, embed, attn, attention)


@dataclass
class Seq2SeqRun:
    steps: list[int]
    losses: list[float]
    seconds: float
    snapshots: dict[int, Any] = field(default_factory=dict, repr=False)  # step -> state_dict copy
    sizes: dict = field(default_factory=dict, repr=False)  # the model's hidden, embed, attn
    attention: Callable | None = field(default=None, repr=False)  # the model's attention function

    def __repr__(self):
        return (f"Seq2SeqRun({len(self.steps)} steps in {self.seconds:.1f} s, loss {self.losses[0]:.3f} -> "
                f"{self.losses[-1]:.3f})")


def train(model, pairs: Sequence[tuple[str, str]], steps: int = 300, batch: int = 64, lr: float = 3e-3, seed: int = 0,
          snapshot_at: Sequence[int] = (), on_progress: Callable[[Progress], None] | None = None) -> Seq2SeqRun:
    """Teacher forcing: the decoder reads the true previous character and is scored on the next (cross-entropy,
    padding ignored); Adam, gradients clipped to norm 1. ``snapshot_at``: steps whose weights are kept (to decode
    with a half-trained model later: ``load_snapshot``)."""
    import copy

    import torch

    if steps < 1 or batch < 1 or not pairs:
        raise LabkitUsageError("need steps ≥ 1, batch ≥ 1 and some (input, target) pairs")
    report = Reporter(on_progress)
    with one_thread():
        src, mask = _src_ids([p[0] for p in pairs])
        tgt_in, tgt_out = _tgt_ids([p[1] for p in pairs])
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        record, losses, snaps = [], [], {}
        t0 = time.perf_counter()
        model.train()
        for step in range(1, steps + 1):
            idx = torch.randint(0, len(pairs), (batch,), generator=g)
            logits, _ = model(src[idx], mask[idx], tgt_in[idx])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out[idx].reshape(-1),
                                                     ignore_index=PAD)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            record.append(step)
            losses.append(float(loss.detach()))
            if step in snapshot_at:
                snaps[step] = copy.deepcopy(model.state_dict())
            if step % 25 == 0 or step == steps:
                report(Progress("train", step, steps, "done" if step == steps else "running",
                                f"step {step}: loss {losses[-1]:.3f}", info={"loss": losses[-1]}))
        model.eval()
        return Seq2SeqRun(record, losses, time.perf_counter() - t0, snaps, dict(model.sizes), model.attention)


def load_snapshot(run: Seq2SeqRun, step: int):
    """A model (the same sizes and attention) with the weights ``train`` kept at ``step``."""
    if step not in run.snapshots:
        raise LabkitUsageError(f"no snapshot at step {step}; kept: {sorted(run.snapshots)}")
    model = Seq2Seq(attention=run.attention, **run.sizes)
    model.load_state_dict(run.snapshots[step])
    model.eval()
    return model


# ------------------------------------------------------------------------------------------------ decoding
def _text(ids: Sequence[int]) -> str:
    return "".join(TGT_VOCAB[i] for i in ids if i > EOS)


def greedy(model, src: str, max_len: int = 24) -> tuple[str, float]:
    """The most likely next character at every step, until ``</s>``; (text, its total log-probability)."""
    import torch

    with torch.no_grad():
        s, mask = _src_ids([src])
        keys, state = model.encode(s, mask)
        tok, out, logp = BOS, [], 0.0
        for _ in range(max_len):
            logits, _, state = model.decode(torch.tensor([[tok]]), keys, mask, state)
            lp = torch.log_softmax(logits[0, -1], -1)
            tok = int(lp.argmax())
            logp += float(lp[tok])
            if tok == EOS:
                break
            out.append(tok)
    return _text(out), logp


def _same_length_groups(srcs: Sequence[str]) -> list[list[int]]:
    """Indices of the inputs, grouped by input length: one batch per group, so no input is padded."""
    by_len: dict[int, list[int]] = {}
    for i, src in enumerate(srcs):
        by_len.setdefault(len(src), []).append(i)
    return list(by_len.values())


def greedy_many(model, srcs: Sequence[str], max_len: int = 24) -> list[tuple[str, float]]:
    """``greedy`` for many inputs at once (a batch per input length, so no input is padded): the same outputs,
    much faster."""
    import torch

    results: dict[int, tuple[str, float]] = {}
    with torch.no_grad(), one_thread():
        for idx in _same_length_groups(srcs):
            s, mask = _src_ids([srcs[i] for i in idx])
            keys, state = model.encode(s, mask)
            tok = torch.full((len(idx), 1), BOS, dtype=torch.long)
            outs, logps, alive = [[] for _ in idx], [0.0] * len(idx), [True] * len(idx)
            for _ in range(max_len):
                logits, _, state = model.decode(tok, keys, mask, state)
                lp = torch.log_softmax(logits[:, -1], -1)
                nxt = lp.argmax(-1)
                for j, t in enumerate(nxt.tolist()):
                    if alive[j]:
                        logps[j] += float(lp[j, t])
                        if t == EOS:
                            alive[j] = False
                        else:
                            outs[j].append(t)
                if not any(alive):
                    break
                tok = nxt[:, None]
            for j, i in enumerate(idx):
                results[i] = (_text(outs[j]), logps[j])
    return [results[i] for i in range(len(srcs))]


def beam_search(model, src: str, beam: int = 3, max_len: int = 24) -> tuple[str, float]:
    """Keep the ``beam`` best partial outputs (by total log-probability) at every step; a hypothesis that emits
    ``</s>`` is set aside; the best finished one wins. (text, its total log-probability)."""
    import torch

    if beam < 1:
        raise LabkitUsageError("beam must be 1 or more")
    with torch.no_grad():
        s, mask = _src_ids([src])
        keys, state = model.encode(s, mask)
        hyps = [([BOS], 0.0, state)]  # (ids so far, total log-probability, decoder state)
        done: list[tuple[list[int], float]] = []
        for _ in range(max_len):
            n = len(hyps)
            toks = torch.tensor([[ids[-1]] for ids, _, _ in hyps])
            states = torch.cat([st for _, _, st in hyps], dim=1)
            logits, _, new_state = model.decode(toks, keys.expand(n, -1, -1), mask.expand(n, -1), states)
            lp = torch.log_softmax(logits[:, -1], -1)
            cand = []
            for i, (ids, score, _) in enumerate(hyps):
                top = lp[i].topk(beam)
                cand += [(score + v, i, t) for v, t in zip(top.values.tolist(), top.indices.tolist())]
            cand.sort(key=lambda c: -c[0])
            nxt = []
            for score, i, t in cand[:beam]:
                if t == EOS:
                    done.append((hyps[i][0], score))
                else:
                    nxt.append((hyps[i][0] + [t], score, new_state[:, i:i + 1]))
            hyps = nxt
            # log-probabilities only fall: once a finished output beats every open one, nothing can overtake it
            if not hyps or (done and max(d[1] for d in done) >= hyps[0][1]):
                break
        best = max(done, key=lambda d: d[1]) if done else hyps[0][:2]
    return _text(best[0][1:]), best[1]


def beam_search_many(model, srcs: Sequence[str], beam: int = 3, max_len: int = 24) -> list[tuple[str, float]]:
    """``beam_search`` for many inputs at once: every open hypothesis of every input (of one length) is one row of
    one decoder call per step. The same outputs, much faster."""
    import torch

    if beam < 1:
        raise LabkitUsageError("beam must be 1 or more")
    results: dict[int, tuple[str, float]] = {}
    with torch.no_grad(), one_thread():
        for idx in _same_length_groups(srcs):
            s, mask = _src_ids([srcs[i] for i in idx])
            keys, state = model.encode(s, mask)
            # per input: open hypotheses (ids, score, row of `state`), finished ones (ids, score), still searching?
            hyps = [[([BOS], 0.0, j)] for j in range(len(idx))]
            done: list[list[tuple[list[int], float]]] = [[] for _ in idx]
            active = [True] * len(idx)
            for _ in range(max_len):
                rows = [(j, h) for j in range(len(idx)) if active[j] for h in hyps[j]]
                if not rows:
                    break
                owner = torch.tensor([j for j, _ in rows])
                toks = torch.tensor([[h[0][-1]] for _, h in rows])
                states = state[:, torch.tensor([h[2] for _, h in rows])]
                logits, _, new_state = model.decode(toks, keys[owner], mask[owner], states)
                lp = torch.log_softmax(logits[:, -1], -1)
                top = lp.topk(beam, dim=-1)
                values, indices = top.values.tolist(), top.indices.tolist()
                cand: dict[int, list] = {}
                for r, (j, (ids, score, _)) in enumerate(rows):
                    cand.setdefault(j, []).extend((score + v, r, t, ids) for v, t in zip(values[r], indices[r]))
                for j, cs in cand.items():
                    cs.sort(key=lambda c: -c[0])
                    nxt = []
                    for score, r, t, ids in cs[:beam]:
                        if t == EOS:
                            done[j].append((ids, score))
                        else:
                            nxt.append((ids + [t], score, r))
                    hyps[j] = nxt
                    if not nxt or (done[j] and max(d[1] for d in done[j]) >= nxt[0][1]):
                        active[j] = False
                state = new_state
            for j, i in enumerate(idx):
                best = max(done[j], key=lambda d: d[1]) if done[j] else hyps[j][0][:2]
                results[i] = (_text(best[0][1:]), best[1])
    return [results[i] for i in range(len(srcs))]


def alignment(model, src: str, max_len: int = 24):
    """(input characters, output characters, weights (outputs x inputs) as a numpy array) for the greedy output."""
    import torch

    text, _ = greedy(model, src, max_len)
    with torch.no_grad():
        s, mask = _src_ids([src])
        tin, _ = _tgt_ids([text])
        _, weights = model(s, mask, tin)
    return list(src), list(text) + ["</s>"], weights[0].numpy()


def accuracy(model, pairs: Sequence[tuple[str, str]], decode: str = "greedy", beam: int = 3) -> float:
    """Share of ``pairs`` whose whole output is exactly right."""
    if decode not in ("greedy", "beam"):
        raise LabkitUsageError("decode must be 'greedy' or 'beam'")
    if decode == "greedy":
        outs = [o for o, _ in greedy_many(model, [src for src, _ in pairs])]
    else:
        outs = [o for o, _ in beam_search_many(model, [src for src, _ in pairs], beam)]
    right = sum(o == tgt for o, (_, tgt) in zip(outs, pairs))
    return right / max(1, len(pairs))
