"""Reference implementations the labs check the learner's own code against (on inputs the learner never saw),
and fall back on until the learner has written theirs (``labkit.exercises.yours``).

Each follows the library that runs it, so that a learner's function agreeing with these agrees with what the
library computes:

- ``attention``: PyTorch's ``scaled_dot_product_attention`` (and the weights it softmaxes);
- ``rope``: transformers' Llama rotary embedding (``apply_rotary_pos_emb``, "rotate half" layout);
- ``dpo_loss``: trl's ``DPOTrainer`` with ``loss_type="sigmoid"`` (the paper's loss): per pair
  ``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))``, averaged; written here as ``softplus(-x)``.
- ``grpo_advantages``: trl's ``GRPOTrainer`` with ``scale_rewards="group"``: each reward minus its group's mean,
  divided by the group's standard deviation (``trl.trainer.utils.nanstd``: Bessel-corrected) plus 1e-4.
- ``sgns_loss``: skip-gram's negative-sampling loss written as word2vec's logistic regression: one logit per
  (word, context) pair labelled 1 and per (word, noise) pair labelled 0, torch's ``binary_cross_entropy_with_logits``
  summed over the pairs of each word, averaged over the batch.
- ``bpe_pair_counts`` / ``bpe_merge``: one step of BPE training as Sennrich et al. (2016) write it: adjacent symbol
  pairs counted over a word-frequency table, and a pair's occurrences replaced left to right, never overlapping
  ("a a a" with the pair (a, a) gives "aa a").
- ``train_step``: one step of next-token training as ``%finetune`` (transformers' Trainer) takes it: the loss
  transformers computes from ``labels=`` (it shifts the labels itself), gradients clipped to norm 1.0
  (``max_grad_norm``), one optimizer step, gradients cleared.
- lab 01: ``Value`` (a scalar autograd engine, micrograd's) checked by ``agrees_with_autograd`` against
  ``torch.autograd`` on random expression graphs; ``bce_with_logits`` (torch's
  ``binary_cross_entropy_with_logits``); ``adamw_step`` (``torch.optim.AdamW``, one tensor, step by step);
  ``init_std`` (the spread ``xavier_normal_`` and ``kaiming_normal_(nonlinearity="relu")`` draw with, measured);
  gradient clipping against ``torch.nn.utils.clip_grad_norm_``.
"""
from __future__ import annotations


def dpo_loss(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta: float = 0.1):
    import torch
    import torch.nn.functional as F

    t = [torch.as_tensor(x, dtype=torch.float64) for x in (pi_chosen, pi_rejected, ref_chosen, ref_rejected)]
    delta = (t[0] - t[2]) - (t[1] - t[3])
    return F.softplus(-beta * delta).mean()


def grpo_advantages(rewards, group_size: int):
    import torch
    from trl.trainer.utils import nanstd

    r = torch.as_tensor(rewards, dtype=torch.float64)
    groups = r.view(-1, group_size)
    mean = groups.mean(dim=1).repeat_interleave(group_size)
    std = nanstd(groups, dim=1).repeat_interleave(group_size)
    return (r - mean) / (std + 1e-4)


def agrees_with_dpo_loss(fn, trials: int = 30, seed: int = 10) -> bool:
    """Does ``fn(pi_c, pi_r, ref_c, ref_r, beta)`` give the reference's mean loss on random log-probabilities?"""
    import torch

    g = torch.Generator().manual_seed(seed)
    for _ in range(trials):
        n = int(torch.randint(1, 9, (1,), generator=g))
        args = [-torch.rand(n, generator=g, dtype=torch.float64) * 40 for _ in range(4)]
        beta = float(torch.rand(1, generator=g)) * 0.5 + 0.01
        got = fn(*args, beta)
        try:
            got = float(got)
        except (TypeError, ValueError):
            return False
        if abs(got - float(dpo_loss(*args, beta))) > 1e-6:
            return False
    return True


def agrees_with_grpo_advantages(fn, trials: int = 30, seed: int = 11) -> bool:
    """Does ``fn(rewards, group_size)`` give trl's group-normalised advantages on random rewards?"""
    import torch

    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        size = int(torch.randint(2, 7, (1,), generator=g))
        n_groups = int(torch.randint(1, 5, (1,), generator=g))
        r = torch.rand(size * n_groups, generator=g, dtype=torch.float64)
        if t % 5 == 0:
            r[:size] = 0.5  # a group where every reply scored the same: nothing to learn from it
        got = fn(r.clone(), size)
        try:
            got = torch.as_tensor(got, dtype=torch.float64).reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            return False
        if got.shape != r.shape or not torch.allclose(got, grpo_advantages(r, size), atol=1e-6):
            return False
    return True


def attention(q, k, v, mask=None):
    """(out, weights) as PyTorch computes them: ``out`` from ``scaled_dot_product_attention`` (``mask``: True =
    may attend)."""
    import torch
    import torch.nn.functional as F

    d = q.shape[-1]
    scores = torch.matmul(q, k.transpose(-2, -1)) * d ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights


def rope(x, positions, theta: float = 10000.0):
    """Rotate ``x`` (..., n, d) by ``positions`` with transformers' Llama code."""
    import torch
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    d = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None], emb.sin()[None]
    lead = x.reshape(-1, *x.shape[-2:])[:, None]  # (batch, heads=1, n, d) as transformers expects
    out, _ = apply_rotary_pos_emb(lead, lead, cos, sin)
    return out.reshape(x.shape)


def agrees_with_attention(fn, trials: int = 12, seed: int = 5) -> bool:
    """Does ``fn(q, k, v, mask)`` return PyTorch's output and weights (rows summing to 1, masked pairs 0)?"""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        n, m, d = (int(torch.randint(1, 9, (1,), generator=g)) for _ in range(3))
        q, k, v = (torch.randn(2, n, d, generator=g), torch.randn(2, m, d, generator=g),
                   torch.randn(2, m, d, generator=g))
        mask = None
        if t % 2:
            mask = torch.rand(n, m, generator=g) < 0.7
            mask[:, 0] = True  # every query may attend somewhere
        try:
            out, w = fn(q, k, v, mask)
        except Exception:  # noqa: BLE001 - a learner's bug is a wrong answer, not a crash
            return False
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if out.shape != ref.shape or not torch.allclose(out, ref, atol=1e-5):
            return False
        if not torch.allclose(w.sum(-1), torch.ones(2, n), atol=1e-5):
            return False
        if mask is not None and (w[:, ~mask].abs() > 0).any():
            return False
    return True


def agrees_with_rope(fn, model=None, seed: int = 6) -> bool:
    """Does ``fn(x, positions, theta)`` rotate as transformers' Llama does (the model's own rotary embedding when
    ``model`` is given)?"""
    import torch
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    g = torch.Generator().manual_seed(seed)
    cases = []
    if model is not None:
        cfg = model.config
        d = cfg.head_dim
        x = torch.randn(1, cfg.num_attention_heads, 9, d, generator=g)
        pos = torch.arange(9)
        cos, sin = model.model.rotary_emb(x, pos[None])
        ref, _ = apply_rotary_pos_emb(x, x, cos, sin)
        theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
        cases.append((x, pos, theta, ref))
    for theta in (10000.0, 500.0):
        x = torch.randn(3, 7, 16, generator=g)
        pos = torch.randint(0, 300, (7,), generator=g)
        cases.append((x, pos, theta, rope(x, pos, theta)))
    for x, pos, theta, ref in cases:
        try:
            got = fn(x.clone(), pos, theta)
        except Exception:  # noqa: BLE001
            return False
        if got.shape != ref.shape or not torch.allclose(got, ref, atol=1e-4):
            return False
    return True


def train_step(model, batch, optimizer, clip: float = 1.0) -> float:
    import torch

    loss = model(batch, labels=batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad()
    return float(loss.detach())


def agrees_with_train_step(fn, make_model, batches, seed: int = 7) -> bool:
    """Does ``fn(model, batch, optimizer)`` train exactly as ``train_step``? Two copies of a fresh model take the
    same steps, one with ``fn`` and one with the reference, under plain SGD (where a missing clip, a missing
    ``zero_grad`` or a misaligned target changes the weights; Adam would hide a clip) and then AdamW; the losses
    returned and the weights after every step must agree."""
    import copy

    import torch

    torch.manual_seed(seed)
    for make_opt, scale in ((lambda p: torch.optim.SGD(p, lr=0.5), 8.0), (lambda p: torch.optim.AdamW(p, lr=1e-2), 1.0)):
        mine = make_model()
        with torch.no_grad():  # large weights -> a gradient norm well above the clip, so a missing clip shows
            for p in mine.parameters():
                if p.dim() > 1:
                    p.mul_(scale)
        ref = copy.deepcopy(mine)
        opt_m, opt_r = make_opt(mine.parameters()), make_opt(ref.parameters())
        for batch in batches:
            got, want = fn(mine, batch, opt_m), train_step(ref, batch, opt_r)
            if got is None or abs(float(got) - want) > 1e-4 * max(1.0, abs(want)):
                return False
            for p, q in zip(mine.parameters(), ref.parameters()):
                if not torch.allclose(p, q, rtol=1e-4, atol=1e-6):
                    return False
    return True


def sgns_loss(center, context, noise):
    import torch
    import torch.nn.functional as F

    logits = torch.cat([(center * context).sum(-1, keepdim=True), torch.einsum("bkd,bd->bk", noise, center)], dim=1)
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1.0
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / len(center)


def agrees_with_sgns_loss(fn, trials: int = 20, seed: int = 8) -> bool:
    """Does ``fn(center, context, noise)`` give the reference's loss, and its gradients, on random vectors of sizes
    the learner never saw?"""
    import torch

    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        b, k, d = 1 + t % 5, 1 + t % 4, 3 + t % 7
        xs = [torch.randn(*shape, generator=g, dtype=torch.float64) * (1 + t % 3)
              for shape in ((b, d), (b, d), (b, k, d))]
        mine = [x.clone().requires_grad_(True) for x in xs]
        ref = [x.clone().requires_grad_(True) for x in xs]
        got, want = fn(*mine), sgns_loss(*ref)
        if not isinstance(got, torch.Tensor) or got.numel() != 1 or not got.requires_grad:
            return False
        if not torch.allclose(got.reshape(()).to(want.dtype), want, rtol=1e-5, atol=1e-7):
            return False
        got.sum().backward()
        want.backward()
        if not all(torch.allclose(m.grad, r.grad, rtol=1e-5, atol=1e-7) for m, r in zip(mine, ref)):
            return False
    return True


def bpe_pair_counts(words):
    from collections import Counter

    pairs = Counter()
    for symbols, count in words.items():
        for i in range(len(symbols) - 1):
            pairs[(symbols[i], symbols[i + 1])] += count
    return pairs


def bpe_merge(symbols, pair):
    out, i = [], 0
    symbols = tuple(symbols)
    while i < len(symbols):
        if symbols[i:i + 2] == tuple(pair):
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def agrees_with_bpe_step(pair_counts, merge, trials: int = 40, seed: int = 12) -> bool:
    """Do the learner's ``pair_counts(words)`` and ``merge(symbols, pair)`` agree with the references on random
    word tables and symbol tuples, repeated pairs ("aaaa") included?"""
    import random

    rng = random.Random(seed)
    for t in range(trials):
        alphabet = "abc" if t % 2 else "abcdefgh"
        words = {tuple(rng.choice(alphabet) for _ in range(rng.randint(1, 7))): rng.randint(1, 9) for _ in range(6)}
        got = pair_counts(dict(words))
        if dict(got) != dict(bpe_pair_counts(words)):
            return False
        symbols = tuple(rng.choice(alphabet[:3]) for _ in range(rng.randint(0, 9)))
        pair = (rng.choice(alphabet[:3]), rng.choice(alphabet[:3]))
        if tuple(merge(symbols, pair)) != bpe_merge(symbols, pair):
            return False
    return True


# ------------------------------------------------------------------------------------ lab 01: neural networks
class Value:
    """A scalar that remembers how it was computed, so that ``backward()`` can fill every input's ``grad``
    (micrograd's engine: +, ×, tanh, relu; plain numbers on either side of + and ×)."""

    def __init__(self, data, children=()):
        self.data, self.grad = float(data), 0.0
        self._children = tuple(children)
        self._backward = lambda: None

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other))

        def backward():
            self.grad += out.grad
            other.grad += out.grad
        out._backward = backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other))

        def backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = backward
        return out

    __radd__ = __add__
    __rmul__ = __mul__

    def tanh(self):
        import math

        t = math.tanh(self.data)
        out = Value(t, (self,))

        def backward():
            self.grad += (1 - t * t) * out.grad
        out._backward = backward
        return out

    def relu(self):
        out = Value(self.data if self.data > 0 else 0.0, (self,))

        def backward():
            self.grad += (1.0 if self.data > 0 else 0.0) * out.grad
        out._backward = backward
        return out

    def backward(self):
        order, seen = [], set()

        def visit(v):  # every node after the nodes it was computed from
            if id(v) not in seen:
                seen.add(id(v))
                for c in v._children:
                    visit(c)
                order.append(v)
        visit(self)
        self.grad = 1.0
        for v in reversed(order):
            v._backward()

    def __repr__(self):
        return f"Value(data={self.data:.4g}, grad={self.grad:.4g})"


_OPS = ("add", "mul", "tanh", "relu", "add_num", "num_add", "mul_num", "num_mul")


def _apply(op, a, b, c):
    """One step of an expression, written so that the same line runs on a Value and on a torch tensor."""
    return {"add": lambda: a + b, "mul": lambda: a * b, "tanh": lambda: a.tanh(), "relu": lambda: a.relu(),
            "add_num": lambda: a + c, "num_add": lambda: c + a, "mul_num": lambda: a * c,
            "num_mul": lambda: c * a}[op]()


def random_expressions(trials: int = 40, seed: int = 13):
    """Random expression graphs: (leaf values, recipe), recipe = [(op, i, j, number)] over the nodes so far
    (leaves first). Nodes are reused (a*a, a diamond where one node feeds two others), and some leaves are not
    used at all (their gradient must be 0). The first cases are the classic traps, fixed."""
    import random

    rng = random.Random(seed)
    cases = [([1.5], [("add", 0, 0, 0.0)]),                                   # a + a: both uses add up
             ([0.7, -1.3], [("mul", 0, 1, 0.0), ("tanh", 2, 2, 0.0), ("add", 2, 3, 0.0), ("mul", 4, 2, 0.0)]),
             ([-0.4, 2.0], [("relu", 0, 0, 0.0), ("mul_num", 1, 1, -3.0), ("add", 2, 3, 0.0)])]
    while len(cases) < trials:
        leaves = [round(rng.uniform(-2, 2), 3) or 0.5 for _ in range(rng.randint(1, 4))]
        recipe, n = [], len(leaves)
        for _ in range(rng.randint(2, 12)):
            i, j = rng.randrange(n), rng.randrange(n)
            recipe.append((rng.choice(_OPS), i, j, round(rng.uniform(-2, 2), 3) or 1.25))
            n += 1
        cases.append((leaves, recipe))
    return cases


def agrees_with_autograd(Value, trials: int = 40, seed: int = 13, rtol: float = 1e-6) -> bool:
    """Does ``Value`` (a scalar autograd class: ``Value(x)``, ``.data``, ``.grad``, +, ×, ``.tanh()``,
    ``.relu()``, ``.backward()``) compute what ``torch.autograd`` computes, value and every input's gradient, on
    random expression graphs it was never shown?"""
    import math

    import torch

    for leaves, recipe in random_expressions(trials, seed):
        xs = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in leaves]
        nodes = list(xs)
        for op, i, j, c in recipe:
            nodes.append(_apply(op, nodes[i], nodes[j], c))
        nodes[-1].backward()
        want = [float(x.grad) if x.grad is not None else 0.0 for x in xs]
        try:
            vs = [Value(x) for x in leaves]
            mine = list(vs)
            for op, i, j, c in recipe:
                mine.append(_apply(op, mine[i], mine[j], c))
            mine[-1].backward()
            got_value, got = float(mine[-1].data), [float(v.grad) for v in vs]
        except Exception:  # noqa: BLE001 - a learner's bug is a wrong answer, not a crash
            return False
        if not math.isclose(got_value, float(nodes[-1].detach()), rel_tol=rtol, abs_tol=1e-9):
            return False
        if not all(math.isclose(g, w, rel_tol=rtol, abs_tol=1e-9) for g, w in zip(got, want)):
            return False
    return True


def bce_with_logits(logits, targets):
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits, targets)


def agrees_with_bce_with_logits(fn, trials: int = 20, seed: int = 15) -> bool:
    """Does ``fn(logits, targets)`` give torch's mean binary cross-entropy, and its gradient, in float32, on logits
    as large as ±120 (where computing sigmoid first underflows to exactly 0 or 1) and on soft targets?"""
    import torch

    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        n = 1 + t % 7
        logits = torch.randn(n, generator=g) * [1.0, 5.0, 30.0, 120.0][t % 4]
        targets = (torch.rand(n, generator=g) < 0.5).float() if t % 3 else torch.rand(n, generator=g)
        mine, ref = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
        try:
            got = fn(mine, targets.clone())
            if not isinstance(got, torch.Tensor) or got.numel() != 1 or not torch.isfinite(got).all():
                return False
            got.reshape(()).backward()
        except Exception:  # noqa: BLE001
            return False
        want = bce_with_logits(ref, targets)
        want.backward()
        if not torch.allclose(got.reshape(()).float(), want, rtol=1e-4, atol=1e-5):
            return False
        if mine.grad is None or not torch.allclose(mine.grad, ref.grad, rtol=1e-4, atol=1e-6):
            return False
    return True


def agrees_with_init_std(fn, seed: int = 16) -> bool:
    """Does ``fn(fan_in, fan_out, activation)`` give the standard deviation torch's initialisers draw with:
    ``kaiming_normal_(nonlinearity="relu")`` (He) for ``"relu"`` and ``xavier_normal_`` (Glorot) for ``"tanh"``,
    measured on large weight matrices of shapes the learner never saw?"""
    import torch

    torch.manual_seed(seed)
    for fan_in, fan_out in ((300, 700), (900, 250), (512, 512)):
        for act, init in (("relu", lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="relu")),
                          ("tanh", torch.nn.init.xavier_normal_)):
            measured = float(init(torch.empty(fan_out, fan_in)).std())
            try:
                got = float(fn(fan_in, fan_out, act))
            except Exception:  # noqa: BLE001
                return False
            if abs(got - measured) > 0.01 * measured:
                return False
    return True


def agrees_with_adamw(fn, trials: int = 12, seed: int = 14) -> bool:
    """Does ``fn(p, grad, state, lr, betas, eps, weight_decay)`` (one AdamW step: returns the new parameter;
    ``state`` is a dict the function keeps between steps, empty at first) follow ``torch.optim.AdamW`` step by
    step, for random shapes, gradients and settings?"""
    import torch

    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        shape = [(3,), (2, 4), (5, 1, 2)][t % 3]
        lr = float(10 ** torch.empty(1).uniform_(-3, -1, generator=g))
        betas = (float(torch.empty(1).uniform_(0.7, 0.95, generator=g)),
                 float(torch.empty(1).uniform_(0.9, 0.999, generator=g)))
        eps, wd = [1e-8, 1e-3][t % 2], [0.0, 0.01, 0.3][t % 3]
        p0 = torch.randn(shape, generator=g, dtype=torch.float64)
        ref = p0.clone().requires_grad_(True)
        opt = torch.optim.AdamW([ref], lr=lr, betas=betas, eps=eps, weight_decay=wd)
        mine, state = p0.clone(), {}
        for _ in range(6):
            grad = torch.randn(shape, generator=g, dtype=torch.float64) * 10 ** float(
                torch.empty(1).uniform_(-3, 1, generator=g))
            ref.grad = grad.clone()
            opt.step()
            try:
                out = fn(mine, grad.clone(), state, lr, betas, eps, wd)
                mine = out if out is not None else mine
                if not isinstance(mine, torch.Tensor) or mine.shape != p0.shape:
                    return False
            except Exception:  # noqa: BLE001
                return False
            if not torch.allclose(mine.detach().double(), ref.detach(), rtol=1e-6, atol=1e-9):
                return False
    return True


def agrees_with_clip_grad_norm(fn, trials: int = 12, seed: int = 17) -> bool:
    """Does ``fn(params, max_norm)`` do what ``torch.nn.utils.clip_grad_norm_`` does: return the global norm of
    all the gradients (before clipping) and scale them all down together when it exceeds ``max_norm``, leaving
    them alone when it does not and skipping parameters without a gradient?"""
    import torch

    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        shapes = [(3, 4), (4,), (2, 2, 2), (1,)][: 1 + t % 4]
        grads = [torch.randn(s, generator=g) * 10 ** float(torch.empty(1).uniform_(-2, 2, generator=g))
                 for s in shapes]
        max_norm = float(torch.empty(1).uniform_(0.1, 5.0, generator=g))
        ref, mine = [], []
        for i, gr in enumerate(grads):
            a, b = torch.zeros_like(gr, requires_grad=True), torch.zeros_like(gr, requires_grad=True)
            a.grad, b.grad = gr.clone(), gr.clone()
            ref.append(a)
            mine.append(b)
        if t % 3 == 0:  # a parameter that got no gradient
            ref.append(torch.zeros(2, requires_grad=True))
            mine.append(torch.zeros(2, requires_grad=True))
        want = float(torch.nn.utils.clip_grad_norm_(ref, max_norm))
        try:
            got = float(fn(mine, max_norm))
        except Exception:  # noqa: BLE001
            return False
        if abs(got - want) > 1e-4 * max(1.0, want):
            return False
        for a, b in zip(ref, mine):
            if (a.grad is None) != (b.grad is None):
                return False
            if a.grad is not None and not torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-7):
                return False
    return True


def adamw_step(p, grad, state: dict, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
    """One step of ``torch.optim.AdamW`` on one tensor, as a function (``state`` keeps the step count and the two
    moments between calls): decoupled decay, the two moving averages, bias correction, the update."""
    import torch

    if not state:
        state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
    state["step"] += 1
    beta1, beta2 = betas
    p = p * (1 - lr * weight_decay)
    state["m"] = state["m"] * beta1 + grad * (1 - beta1)
    state["v"] = state["v"] * beta2 + grad * grad * (1 - beta2)
    denom = (state["v"] / (1 - beta2 ** state["step"])).sqrt() + eps
    return p - lr * (state["m"] / (1 - beta1 ** state["step"])) / denom


def init_std(fan_in: int, fan_out: int, activation: str) -> float:
    """The standard deviation torch's normal initialisers draw with: ``kaiming_normal_`` (He, fan-in mode) for
    ``"relu"``, ``xavier_normal_`` (Glorot, gain 1) otherwise."""
    import math

    import torch

    if activation == "relu":
        return torch.nn.init.calculate_gain("relu") / math.sqrt(fan_in)
    return math.sqrt(2.0 / (fan_in + fan_out))
