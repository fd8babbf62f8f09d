"""Lab 15's engine: architecture variants on a CPU, small enough to train and time in seconds.

- **Mixture of experts**: a top-k router (:func:`top_k_route`), the Switch/GShard load-balancing loss
  (:func:`load_balance_loss`), a :class:`MoEFeedForward` layer and a :class:`DenseFeedForward` of the same active
  parameters, inside a tiny character-level language model (:class:`CharLM`) trained on the zoo corpus
  (:func:`char_data`, :func:`train_lm`).
- **Linear-time sequence mixers**: causal linear attention as a running sum (:func:`causal_linear_attention`), a
  chunked form of it (:func:`chunked_linear_attention`), and the selective state-space scan of Mamba
  (:func:`selective_scan`, :func:`ssm_inputs`).
- **Sliding-window attention**: the mask (:func:`sliding_window_mask`) and a banded, block-by-block form
  (:func:`banded_attention`).
- **Cost vs sequence length** (:func:`cost_curve`): wall time and the bytes of the largest tensors each mixer
  holds at once, from the torch profiler.
- **Long context** (:func:`kv_cache_bytes`): what a KV cache weighs at a given context length.
- **The lab's checks** (``check_*``): each exercise against an independent form, on inputs the learner did not see.

The lab's learner writes the router, the balancing loss, the running-sum attention, the scan and the mask; the
functions here are the kit's own versions, used until theirs exist.
"""
from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ------------------------------------------------------------------------------------------------ mixture of experts
def top_k_route(logits: torch.Tensor, k: int):
    """Router: ``logits`` [T, E] -> (probs [T, E] softmax over all experts, weights [T, k] the chosen experts'
    probabilities renormalised to sum to 1, indices [T, k] the chosen experts, highest first)."""
    probs = logits.softmax(-1)
    w, idx = probs.topk(k, dim=-1)
    return probs, w / w.sum(-1, keepdim=True), idx


def load_balance_loss(probs: torch.Tensor, indices: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Switch Transformer's auxiliary loss: ``n_experts * sum_i f_i * P_i``, with ``f_i`` the share of tokens whose
    first choice is expert ``i`` and ``P_i`` the mean router probability of expert ``i``. 1 at perfect balance."""
    first = indices[:, 0] if indices.dim() == 2 else indices
    f = torch.bincount(first, minlength=n_experts).to(probs.dtype) / first.numel()
    return n_experts * (f * probs.mean(0)).sum()


class DenseFeedForward(nn.Module):
    """A transformer's feed-forward block: d -> hidden -> d."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.up, self.down = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.aux = torch.zeros(())

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class MoEFeedForward(nn.Module):
    """``n_experts`` feed-forward experts of ``hidden`` units each; every token goes through ``k`` of them, mixed
    by the router's renormalised weights. ``route`` and ``balance`` are the router and the loss (swap in yours);
    after a forward pass, ``aux`` holds the balancing loss and ``last_indices`` the choices."""

    def __init__(self, d: int, hidden: int, n_experts: int, k: int, route=top_k_route, balance=load_balance_loss):
        super().__init__()
        self.n_experts, self.k, self.route, self.balance = n_experts, k, route, balance
        self.router = nn.Linear(d, n_experts, bias=False)
        self.experts = nn.ModuleList(DenseFeedForward(d, hidden) for _ in range(n_experts))
        self.aux = torch.zeros(())
        self.last_indices = None

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs, w, idx = self.route(self.router(x), self.k)
        self.aux = self.balance(probs, idx, self.n_experts)
        self.last_indices = idx.detach()
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel():
                out.index_add_(0, tok, expert(x[tok]) * w[tok, slot, None])
        return out.reshape(shape)


def active_parameters(block: nn.Module) -> int:
    """Parameters one token passes through: all of a dense block; the router and ``k`` experts of an MoE."""
    if isinstance(block, MoEFeedForward):
        per = sum(p.numel() for p in block.experts[0].parameters())
        return block.k * per + block.router.weight.numel()
    return sum(p.numel() for p in block.parameters())


class CharLM(nn.Module):
    """Next character from the previous ``context`` characters: embeddings, concatenated and projected to ``d``,
    one feed-forward block (dense or MoE) with a residual connection, then the output layer."""

    def __init__(self, vocab: int, block: nn.Module, d: int = 64, context: int = 8, emb: int = 16):
        super().__init__()
        self.context = context
        self.emb = nn.Embedding(vocab, emb)
        self.proj = nn.Linear(context * emb, d)
        self.norm = nn.LayerNorm(d)
        self.block = block
        self.out = nn.Linear(d, vocab)

    def forward(self, ctx):
        h = self.proj(self.emb(ctx).flatten(1))
        h = h + self.block(self.norm(h))
        return self.out(h)


@dataclass
class CharData:
    chars: str
    train: torch.Tensor
    test: torch.Tensor

    @property
    def vocab(self) -> int:
        return len(self.chars)


def char_data(n_train: int = 200_000, n_test: int = 20_000, seed: int = 0) -> CharData:
    """Characters of the zoo corpus (stories, encyclopedia entries, arithmetic, chats): the train split's documents
    for training, the test split's for held-out loss (a document's split is fixed by a hash of its text)."""
    from .zoo.corpus import Corpus

    c = Corpus(seed=seed)

    def take(split, n):
        out, size = [], 0
        for doc in c.pretrain_docs(split):
            doc = doc.replace("<|endoftext|>", "\n")
            out.append(doc)
            size += len(doc)
            if size >= n:
                return "".join(out)[:n]

    train, test = take("train", n_train), take("test", n_test)
    chars = "".join(sorted(set(train) | set(test)))
    enc = {ch: i for i, ch in enumerate(chars)}
    t = lambda s: torch.tensor([enc[ch] for ch in s], dtype=torch.long)
    return CharData(chars, t(train), t(test))


def _windows(ids: torch.Tensor, pos: torch.Tensor, context: int):
    offs = torch.arange(-context, 0)
    return ids[pos[:, None] + offs], ids[pos]


@dataclass
class TrainResult:
    name: str
    losses: list = field(default_factory=list)
    aux: list = field(default_factory=list)
    test_loss: float = float("nan")
    usage: list | None = None   # share of (token, slot) choices per expert on the test text
    seconds: float = 0.0
    total_params: int = 0
    active_params: int = 0


@torch.no_grad()
def test_loss(model: CharLM, data: CharData, n: int = 8192) -> float:
    pos = torch.arange(model.context, min(len(data.test), model.context + n))
    x, y = _windows(data.test, pos, model.context)
    return F.cross_entropy(model(x), y).item()


@torch.no_grad()
def expert_usage(model: CharLM, data: CharData, n: int = 8192) -> list:
    pos = torch.arange(model.context, min(len(data.test), model.context + n))
    x, _ = _windows(data.test, pos, model.context)
    model(x)
    idx = model.block.last_indices
    return (torch.bincount(idx.flatten(), minlength=model.block.n_experts).float() / idx.numel()).tolist()


def train_lm(model: CharLM, data: CharData, *, steps: int = 300, batch: int = 256, lr: float = 3e-3,
             aux_weight: float = 0.01, seed: int = 0, name: str = "") -> TrainResult:
    """Adam on random windows of the training text; the loss is cross-entropy plus ``aux_weight`` times the
    block's balancing loss (0 for a dense block)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    res = TrainResult(name, total_params=sum(p.numel() for p in model.parameters()),
                      active_params=active_parameters(model.block))
    t0 = time.perf_counter()
    model.train()
    for _ in range(steps):
        pos = torch.randint(model.context, len(data.train), (batch,), generator=g)
        x, y = _windows(data.train, pos, model.context)
        ce = F.cross_entropy(model(x), y)
        aux = model.block.aux
        loss = ce + aux_weight * aux
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        res.losses.append(ce.item())
        res.aux.append(float(aux.detach()))
    model.eval()
    res.seconds = time.perf_counter() - t0
    res.test_loss = test_loss(model, data)
    if isinstance(model.block, MoEFeedForward):
        res.usage = expert_usage(model, data)
    return res


# ------------------------------------------------------------------------------------------------ sequence mixers
def feature_map(x: torch.Tensor) -> torch.Tensor:
    """The positive feature map of Katharopoulos et al. (2020): elu(x) + 1."""
    return F.elu(x) + 1


def causal_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal linear attention, one step at a time: ``q``, ``k`` [n, d] (already through the feature map, so
    positive), ``v`` [n, dv]. Keeps S = sum k_s v_s^T and z = sum k_s over s <= t; out_t = q_t S / (q_t . z)."""
    S = q.new_zeros(q.shape[-1], v.shape[-1])
    z = q.new_zeros(q.shape[-1])
    out = []
    for t in range(q.shape[0]):
        S = S + torch.outer(k[t], v[t])
        z = z + k[t]
        out.append((q[t] @ S) / (q[t] @ z))
    return torch.stack(out)


def chunked_linear_attention(q, k, v, chunk: int = 64):
    """The same result in chunks: exact attention inside a chunk, the running state across chunks (the form real
    kernels use: O(n) in length, matrix products instead of a Python step per token)."""
    n, d = q.shape
    S = q.new_zeros(d, v.shape[-1])
    z = q.new_zeros(d)
    out = []
    for s in range(0, n, chunk):
        qc, kc, vc = q[s:s + chunk], k[s:s + chunk], v[s:s + chunk]
        a = (qc @ kc.T).tril()
        num = qc @ S + a @ vc
        den = qc @ z + a.sum(-1)
        out.append(num / den[:, None])
        S = S + kc.T @ vc
        z = z + kc.sum(0)
    return torch.cat(out)


def selective_scan(x, delta, A, B, C):
    """Mamba's selective state-space recurrence, one step at a time. ``x``, ``delta`` [L, D]; ``A`` [D, N]
    (negative); ``B``, ``C`` [L, N] (they depend on the input: that is the *selective* part). For each channel,
    h_t = exp(delta_t A) * h_{t-1} + delta_t B_t x_t and y_t = h_t . C_t; returns y [L, D]."""
    L, D = x.shape
    h = x.new_zeros(D, A.shape[1])
    ys = []
    for t in range(L):
        h = torch.exp(delta[t, :, None] * A) * h + (delta[t, :, None] * B[t]) * x[t, :, None]
        ys.append(h @ C[t])
    return torch.stack(ys)


def ssm_inputs(L: int, D: int = 16, N: int = 8, seed: int = 0):
    """Random inputs for a selective scan, as a Mamba block makes them: delta = softplus(...) > 0, A < 0, and B, C
    projections of the input."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(L, D, generator=g)
    delta = F.softplus(torch.randn(L, D, generator=g) - 1)
    A = -torch.exp(torch.randn(D, N, generator=g) * 0.5)
    W_B, W_C = torch.randn(D, N, generator=g) / D ** 0.5, torch.randn(D, N, generator=g) / D ** 0.5
    return x, delta, A, x @ W_B, x @ W_C


# ------------------------------------------------------------------------------------------------ sliding window
def sliding_window_mask(n: int, window: int) -> torch.Tensor:
    """[n, n] booleans: True where query i may attend to key j (j <= i and i - j < window)."""
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    return (j <= i) & (i - j < window)


def softmax_attention(q, k, v, mask=None):
    """Plain causal softmax attention that builds the full [n, n] score matrix (what the cost curve measures)."""
    n = q.shape[0]
    scores = (q @ k.T) / math.sqrt(q.shape[-1])
    if mask is None:
        mask = torch.ones(n, n, dtype=torch.bool).tril()
    return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v


def banded_attention(q, k, v, window: int):
    """Sliding-window causal attention computed block by block: queries in blocks of ``window``, each against only
    the keys it can see (its own block and the one before). Same result as :func:`softmax_attention` with
    :func:`sliding_window_mask`, in O(n * window) time and memory instead of O(n^2)."""
    n, d = q.shape
    out = []
    for s in range(0, n, window):
        e = min(n, s + window)
        lo = max(0, s - window + 1)
        scores = (q[s:e] @ k[lo:e].T) / math.sqrt(d)
        i = torch.arange(s, e)[:, None]
        j = torch.arange(lo, e)[None, :]
        keep = (j <= i) & (i - j < window)
        out.append(scores.masked_fill(~keep, float("-inf")).softmax(-1) @ v[lo:e])
    return torch.cat(out)


# ------------------------------------------------------------------------------------------------ cost vs length
class _LiveBytes:
    """Counts the bytes of tensors that torch operations create while it is active, and the peak of those alive at
    once (a tensor is alive until Python frees it; views share their base's storage and are counted once)."""

    def __init__(self):
        self.now = self.peak = 0
        self._refs: dict[int, int] = {}

    def _freed(self, key: int, nbytes: int):
        self._refs[key] -= 1
        if not self._refs[key]:
            del self._refs[key]
            self.now -= nbytes

    def add(self, t: torch.Tensor):
        st = t.untyped_storage()
        key, nbytes = st.data_ptr(), st.nbytes()
        if key not in self._refs:
            self._refs[key] = 0
            self.now += nbytes
            self.peak = max(self.peak, self.now)
        self._refs[key] += 1
        weakref.finalize(t, self._freed, key, nbytes)


def peak_bytes(fn, *args) -> int:
    """Peak bytes of the tensors that ``fn(*args)`` creates and holds at once (every torch operation is seen through
    a dispatch mode); the inputs, made before, are not counted."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    live = _LiveBytes()

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    live.add(t)
            return out

    with Mode():
        fn(*args)
    return live.peak


def _time(fn, *args, repeat: int = 3, min_seconds: float = 0.1, max_repeat: int = 40) -> float:
    """Best of at least ``repeat`` runs, and of more (up to ``max_repeat``) while they total under ``min_seconds``:
    a fast function is timed many times, so one interruption on a busy machine does not decide its figure."""
    best, total, runs = float("inf"), 0.0, 0
    while runs < repeat or (total < min_seconds and runs < max_repeat):
        t = time.perf_counter()
        fn(*args)
        dt = time.perf_counter() - t
        best, total, runs = min(best, dt), total + dt, runs + 1
    return best


@torch.no_grad()
def cost_curve(mixers: dict, lengths=(256, 512, 1024, 2048, 4096), d: int = 32, seed: int = 0,
               memory: bool = True, repeat: int = 2) -> dict:
    """Seconds (best of at least ``repeat`` runs) and peak bytes of each mixer ``name -> fn(q, k, v)`` at each length. For the
    SSM entry, pass a function of (q, k, v) that builds its own scan inputs from them."""
    g = torch.Generator().manual_seed(seed)
    out = {"lengths": list(lengths), "seconds": {m: [] for m in mixers}, "bytes": {m: [] for m in mixers}}
    for n in lengths:
        q, k, v = (torch.randn(n, d, generator=g) for _ in range(3))
        for name, fn in mixers.items():
            out["seconds"][name].append(_time(fn, q, k, v, repeat=repeat))
            out["bytes"][name].append(peak_bytes(fn, q, k, v) if memory else float("nan"))
    return out


# ------------------------------------------------------------------------------------------------ long context
def kv_cache_bytes(context: int, layers: int, kv_heads: int, head_dim: int, bytes_per: int = 2,
                   window: int | None = None) -> int:
    """Bytes of a KV cache for one sequence: keys and values of every layer, for ``context`` tokens (or only the
    last ``window`` of them with sliding-window attention)."""
    kept = context if window is None else min(context, window)
    return 2 * layers * kv_heads * head_dim * kept * bytes_per


# ------------------------------------------------------------------------------------------------ the lab's checks
# Each takes the learner's function, tries it on inputs the learner did not see, compares with an independent form
# (torch's own softmax/topk and scaled_dot_product_attention, a NumPy count, the quadratic form of linear attention,
# the closed form of the scan) and prints what differs. They return True or False (``labkit.exercises.check``).


def check_router(fn) -> bool:
    """Exercise 1: ``fn(logits, k)`` against torch.softmax and torch.topk; weights renormalised; differentiable."""
    g = torch.Generator().manual_seed(7)
    for T, E, k in ((5, 4, 1), (33, 8, 2), (17, 6, 3), (4, 5, 5)):
        logits = torch.randn(T, E, generator=g) * 3
        probs, weights, indices = fn(logits.clone(), k)
        want_idx = torch.topk(logits, k, dim=-1).indices          # softmax keeps the order of the logits
        p = torch.softmax(logits, -1)
        if tuple(probs.shape) != (T, E) or tuple(weights.shape) != (T, k) or tuple(indices.shape) != (T, k):
            print("shapes: probs", tuple(probs.shape), "weights", tuple(weights.shape), "indices", tuple(indices.shape)); return False
        if not torch.allclose(probs, p, atol=1e-5) or not torch.allclose(probs.sum(-1), torch.ones(T), atol=1e-5):
            print("probs should be the softmax of the logits (each row sums to 1)"); return False
        if not torch.equal(indices, want_idx):
            print(f"indices for k={k}: got {indices[:2].tolist()}, expected {want_idx[:2].tolist()} (most probable first)"); return False
        chosen = p.gather(1, want_idx)
        if not torch.allclose(weights, chosen / chosen.sum(-1, keepdim=True), atol=1e-5):
            print("weights: the chosen experts' probabilities, renormalised to sum to 1 per token"); return False
    x = torch.randn(6, 4, requires_grad=True)
    return fn(x, 2)[1].requires_grad


def check_balance_loss(fn) -> bool:
    """Exercise 2: 1 at perfect balance, E when collapsed, a NumPy count of first choices on random routings, and a
    gradient through ``probs``."""
    E, T = 8, 64
    even = fn(torch.full((T, E), 1 / E), torch.arange(T)[:, None] % E, E)
    collapsed = fn(F.one_hot(torch.zeros(T, dtype=torch.long), E).float(), torch.zeros(T, 2, dtype=torch.long), E)
    print(f"perfect balance: {float(even):.3f}; all tokens on one expert: {float(collapsed):.3f} (E = {E})")
    if not (abs(float(even) - 1) < 1e-5 and abs(float(collapsed) - E) < 1e-4):
        return False
    rng = np.random.default_rng(5)
    for E, T, k in ((4, 50, 1), (8, 200, 2), (6, 31, 3)):
        p = rng.dirichlet(np.full(E, 0.3), size=T)           # peaked, as a trained router's are
        idx = np.argsort(-p, axis=1)[:, :k]
        counts = np.zeros(E)
        for row in idx:
            counts[row[0]] += 1                                # first choices only
        want = E * float(np.dot(counts / T, p.mean(axis=0)))
        probs = torch.tensor(p, dtype=torch.float32, requires_grad=True)
        got = fn(probs, torch.tensor(idx), E)
        if abs(float(got.detach()) - want) > 1e-4:
            print(f"E={E}, k={k}: got {float(got.detach()):.5f}, expected {want:.5f}"); return False
        if not got.requires_grad:
            print("the loss must carry gradient through probs (it came back detached)"); return False
        got.backward()
        if probs.grad is None or not torch.isfinite(probs.grad).all() or probs.grad.abs().sum() == 0:
            print("the loss must carry gradient through probs"); return False
    return True


def check_linear_attention(fn) -> bool:
    """Exercise 3: the running sum against the O(n^2) masked form, normalised by row."""
    g = torch.Generator().manual_seed(11)
    for n, d, dv in ((1, 3, 2), (9, 4, 5), (40, 8, 8)):
        q, k = feature_map(torch.randn(n, d, generator=g)), feature_map(torch.randn(n, d, generator=g))
        v = torch.randn(n, dv, generator=g)
        scores = (q @ k.T) * torch.ones(n, n).tril()          # causal: query t sees keys s <= t
        want = (scores / scores.sum(-1, keepdim=True)) @ v
        got = fn(q, k, v)
        if tuple(got.shape) != (n, dv) or not torch.allclose(got, want, atol=1e-4):
            print(f"n={n}: differs from the quadratic form by {(got - want).abs().max():.4f}" if got.shape == want.shape
                  else f"shape {tuple(got.shape)}, expected {(n, dv)}"); return False
    return True


def check_scan(fn) -> bool:
    """Exercise 4: the sequential scan against the closed form, all steps at once in double precision."""
    for L, D, N, seed in ((1, 2, 3, 1), (12, 4, 5, 2), (30, 6, 8, 3)):
        x, delta, A, B, C = ssm_inputs(L, D, N, seed=100 + seed)
        xd, dd, Ad, Bd, Cd = (t.double() for t in (x, delta, A, B, C))
        cum = torch.cumsum(dd, 0)                                   # [L, D]: sum of delta up to t
        decay = torch.exp((cum[:, None, :, None] - cum[None, :, :, None]) * Ad)   # [t, s, D, N]
        decay = decay * torch.ones(L, L, dtype=torch.float64).tril()[:, :, None, None]
        drive = (dd * xd)[:, :, None] * Bd[:, None, :]               # [s, D, N]: delta_s B_s x_s
        h = (decay * drive[None]).sum(1)                            # [t, D, N]
        want = (h * Cd[:, None, :]).sum(-1).float()
        got = fn(x, delta, A, B, C)
        if tuple(got.shape) != (L, D) or not torch.allclose(got, want, atol=1e-4):
            print(f"L={L}: differs from the closed form" + (f" by {(got - want).abs().max():.4f}" if got.shape == want.shape
                  else f" (shape {tuple(got.shape)}, expected {(L, D)})")); return False
    return True


def check_window_mask(fn) -> bool:
    """Exercise 5: torch's scaled_dot_product_attention with the mask against attention over each query's slice of
    keys, and plain causal attention when the window covers the sequence."""
    g = torch.Generator().manual_seed(3)
    for n, w in ((1, 1), (10, 1), (12, 3), (16, 5), (9, 9), (7, 20)):
        q, k, v = (torch.randn(1, n, 8, generator=g) for _ in range(3))
        m = fn(n, w)
        if m.dtype != torch.bool or tuple(m.shape) != (n, n):
            print(f"the mask should be a bool tensor of shape {(n, n)}, got {m.dtype} {tuple(m.shape)}"); return False
        got = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        want = torch.stack([F.softmax(q[0, i] @ k[0, max(0, i - w + 1): i + 1].T / math.sqrt(8), -1)
                            @ v[0, max(0, i - w + 1): i + 1] for i in range(n)])
        if not torch.allclose(got[0], want, atol=1e-5):
            print(f"n={n}, window={w}: attention with your mask differs from attention over each query's window"); return False
        if w >= n and not torch.allclose(got, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5):
            print("a window at least as long as the sequence is plain causal attention"); return False
    return True
