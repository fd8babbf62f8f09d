"""Neural language models before the transformer, for lab 02: a fixed-window word model and character-level RNNs.

    >>> from labkit.classic import ngram as G, neural as N
    >>> counts = G.NgramCounts(G.stories("train", 600), order=4, cutoff=2)
    >>> data = N.window_data(counts, G.stories("train", 600), G.stories("val", 100))
    >>> run = N.train_window(N.WindowLM(counts.V, 3, 32, 128), data, epochs=2)   # Bengio et al. (2003)
    >>> text = N.char_text("train", 600); val = N.char_text("val", 60)
    >>> lstm = N.train_char("lstm", text, val, steps=200, on_progress=print)     # a char-level LSTM, live

- ``WindowLM`` (Bengio et al., 2003, *A Neural Probabilistic Language Model*): the previous ``context`` words, each
  looked up in one shared embedding table, concatenated, a tanh hidden layer, a softmax over the vocabulary. The
  lab's learner writes their own; this one is what the lab falls back on until they have.
- ``CharLM``: an embedding, one ``torch.nn.RNN`` / ``LSTM`` / ``GRU``, a linear read-out: the model of Karpathy's
  *The Unreasonable Effectiveness of Recurrent Neural Networks* (2015), small.
- ``lstm_step`` / ``agrees_with_lstm_cell``: one LSTM step as ``torch.nn.LSTMCell`` computes it, the reference the
  learner's own step is checked against; ``sample_chars(..., step=...)`` samples with the learner's step.

torch is imported inside the functions (``import labkit.classic.neural`` is light); the ``torch.nn.Module``
classes are built on first use (``WindowLM``, ``CharLM`` are functions returning instances).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..errors import LabkitUsageError
from ..watch import Progress, Reporter

KINDS = ("rnn", "lstm", "gru")
_CLASSES: dict[str, Any] = {}


@contextlib.contextmanager
def one_thread():
    """torch on one thread for the duration: these models are so small that two threads spend more time
    synchronising than computing (and on a shared machine they wait for each other)."""
    import torch

    from ..runtime import configure_torch

    configure_torch()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _classes() -> dict[str, Any]:
    """The nn.Module classes, defined once torch is imported."""
    if _CLASSES:
        return _CLASSES
    import torch
    from torch import nn

    class WindowLM(nn.Module):
        """Bengio et al. (2003): one embedding table shared by every position of the window, the window's vectors
        concatenated (so position matters), a tanh layer, logits over the vocabulary."""

        def __init__(self, vocab_size: int, context: int, dim: int = 32, hidden: int = 128):
            super().__init__()
            self.embed = nn.Embedding(vocab_size, dim)
            self.hidden = nn.Linear(context * dim, hidden)
            self.out = nn.Linear(hidden, vocab_size)

        def forward(self, ctx):  # (B, context) word ids -> (B, V) logits
            x = self.embed(ctx).flatten(1)
            return self.out(torch.tanh(self.hidden(x)))

    class CharLM(nn.Module):
        def __init__(self, n_chars: int, kind: str = "lstm", hidden: int = 128, embed: int = 32, layers: int = 1):
            super().__init__()
            self.kind = kind
            self.embed = nn.Embedding(n_chars, embed)
            self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](embed, hidden, num_layers=layers,
                                                                         batch_first=True)
            self.head = nn.Linear(hidden, n_chars)

        def forward(self, x, state=None):  # (B, T) char ids -> (B, T, n_chars) logits, final state
            out, state = self.rnn(self.embed(x), state)
            return self.head(out), state

    _CLASSES.update(WindowLM=WindowLM, CharLM=CharLM)
    return _CLASSES


def WindowLM(vocab_size: int, context: int, dim: int = 32, hidden: int = 128):  # noqa: N802 - reads as a class
    """A fresh fixed-window neural LM (the kit's; the lab's learner writes their own)."""
    return _classes()["WindowLM"](vocab_size, context, dim, hidden)


def CharLM(n_chars: int, kind: str = "lstm", hidden: int = 128, embed: int = 32, layers: int = 1):  # noqa: N802
    if kind not in KINDS:
        raise LabkitUsageError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return _classes()["CharLM"](n_chars, kind, hidden, embed, layers)


# ------------------------------------------------------------------------------------------------ fixed window
@dataclass
class WindowData:
    """Word ids: ``X`` (N, context) windows and ``Y`` (N,) the word after each, for training and held-out text."""

    words: list[str]  # id -> word (the n-gram counts' vocabulary, <UNK> included)
    context: int
    X: Any = field(repr=False)
    Y: Any = field(repr=False)
    X_val: Any = field(repr=False)
    Y_val: Any = field(repr=False)

    def __repr__(self):
        return (f"WindowData({len(self.X):,} training and {len(self.X_val):,} held-out windows of {self.context} "
                f"words; V = {len(self.words):,})")


def window_data(counts, train: Sequence[Sequence[str]], held: Sequence[Sequence[str]]) -> WindowData:
    """The n-grams of ``counts``' order (the same ones an n-gram model is scored on, ``ngram.eval_ngrams``) as id
    tensors: a window of ``order - 1`` words, then the word to predict."""
    import torch

    from .ngram import eval_ngrams

    if counts.order < 2:
        raise LabkitUsageError("a window model needs counts of order 2 or more (a window of at least one word)")
    index = {w: i for i, w in enumerate(counts.vocab.words)}

    def tensors(seqs):
        grams = eval_ngrams(seqs, counts)
        ids = torch.tensor([[index[w] for w in g] for g in grams], dtype=torch.long)
        return ids[:, :-1].contiguous(), ids[:, -1].contiguous()

    X, Y = tensors(train)
    Xv, Yv = tensors(held)
    return WindowData(list(counts.vocab.words), counts.order - 1, X, Y, Xv, Yv)


@dataclass
class WindowRun:
    model: Any = field(repr=False)
    steps: list[int]
    losses: list[float]
    val_perplexity: list[float]  # after each epoch
    seconds: float

    def __repr__(self):
        return (f"WindowRun({len(self.steps)} steps in {self.seconds:.1f} s; training loss {self.losses[0]:.2f} -> "
                f"{self.losses[-1]:.2f}; held-out perplexity {self.val_perplexity[-1]:.2f})")


def cross_entropy(model, X, Y, batch: int = 4096) -> float:
    """Mean next-word cross-entropy (nats) of a window model on (X, Y)."""
    import torch

    total = 0.0
    with torch.no_grad():
        for i in range(0, len(X), batch):
            total += float(torch.nn.functional.cross_entropy(model(X[i:i + batch]), Y[i:i + batch], reduction="sum"))
    return total / len(X)


def train_window(model, data: WindowData, epochs: int = 2, batch: int = 128, lr: float = 3e-3, seed: int = 0,
                 on_progress: Callable[[Progress], None] | None = None) -> WindowRun:
    """Adam on shuffled windows; the held-out perplexity is measured after every epoch."""
    if epochs < 1 or batch < 1 or not lr > 0:
        raise LabkitUsageError("need epochs ≥ 1, batch ≥ 1 and lr > 0")
    with one_thread():
        return _train_window(model, data, epochs, batch, lr, seed, on_progress)


def _train_window(model, data, epochs, batch, lr, seed, on_progress) -> WindowRun:
    import torch

    report = Reporter(on_progress)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    per_epoch = math.ceil(len(data.X) / batch)
    steps, losses, val = [], [], []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(data.X), generator=g)
        model.train()
        for i in range(per_epoch):
            idx = order[i * batch:(i + 1) * batch]
            loss = torch.nn.functional.cross_entropy(model(data.X[idx]), data.Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps.append(epoch * per_epoch + i + 1)
            losses.append(float(loss.detach()))
        model.eval()
        val.append(math.exp(cross_entropy(model, data.X_val, data.Y_val)))
        report(Progress("train", steps[-1], epochs * per_epoch, "done" if epoch == epochs - 1 else "running",
                        f"epoch {epoch + 1}: held-out perplexity {val[-1]:.2f}", info={"loss": losses[-1]}))
    return WindowRun(model, steps, losses, val, time.perf_counter() - t0)


def agrees_with_window_lm(cls, seed: int = 14) -> bool:
    """Properties any fixed-window LM of Bengio's shape has, on sizes the learner never saw: ``cls(V, context, dim,
    hidden)`` maps (B, context) ids to (B, V) finite logits; ``.embed`` is one ``nn.Embedding(V, dim)``; changing the
    word at any one position changes the output; swapping two different words changes it (the window is ordered,
    not a bag); and the gradient reaches only the embedding rows of the words in the window."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for V, context, dim, hidden in ((37, 4, 5, 11), (9, 2, 3, 7), (50, 1, 4, 6)):
        torch.manual_seed(seed)
        try:
            model = cls(V, context, dim, hidden)
            emb = getattr(model, "embed", None)
            if not isinstance(emb, torch.nn.Embedding) or tuple(emb.weight.shape) != (V, dim):
                return False
            B = 6
            ctx = torch.randint(0, V, (B, context), generator=g)
            ctx[:, 0] = torch.arange(B) % (V - 1)
            if context > 1:
                ctx[:, 1] = ctx[:, 0] + 1  # two different words, to swap
            out = model(ctx)
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (B, V) or not torch.isfinite(out).all():
                return False
            with torch.no_grad():
                for j in range(context):
                    changed = ctx.clone()
                    changed[:, j] = (changed[:, j] + 1 + j) % V
                    if torch.allclose(model(changed), out.detach(), atol=1e-6):
                        return False
                if context > 1:
                    swapped = ctx.clone()
                    swapped[:, [0, 1]] = swapped[:, [1, 0]]
                    if torch.allclose(model(swapped), out.detach(), atol=1e-6):
                        return False
            model.zero_grad()
            out[0].sum().backward()
            if emb.weight.grad is None:
                return False
            touched = set(torch.nonzero(emb.weight.grad.abs().sum(1)).flatten().tolist())
            if not touched or not touched <= set(ctx[0].tolist()):
                return False
        except Exception:  # noqa: BLE001 - a learner's bug is a wrong answer, not a crash
            return False
    return True


def nearest_words(model, words: Sequence[str], word: str, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` words whose embedding (``model.embed``) is closest in cosine to ``word``'s."""
    import torch

    if word not in words:
        raise LabkitUsageError(f"{word!r} is not in the model's vocabulary")
    E = torch.nn.functional.normalize(model.embed.weight.detach(), dim=1)
    sims = E @ E[words.index(word)]
    best = sims.argsort(descending=True).tolist()
    return [(words[i], round(float(sims[i]), 3)) for i in best if words[i] != word][:k]


# ------------------------------------------------------------------------------------------------ characters
def char_text(split: str = "train", n: int = 600, seed: int = 0) -> str:
    """``n`` stories of the zoo's world as one text, one story per line."""
    from ..zoo.corpus import Corpus
    from ..zoo.formats import EOT

    docs = Corpus(seed).pretrain_docs(split, mix={"story": 1})
    return "\n".join(next(docs).replace(EOT, "").strip() for _ in range(n)) + "\n"


@dataclass
class CharRun:
    """A trained character model and its record."""

    kind: str
    model: Any = field(repr=False)
    chars: str  # id -> character
    steps: list[int]
    losses: list[float]
    val_loss: float
    samples: list[tuple[int, str]]  # (step, sampled text) as training went
    seconds: float

    def __repr__(self):
        return (f"CharRun({self.kind}: {len(self.steps)} steps in {self.seconds:.1f} s, loss {self.losses[0]:.2f} -> "
                f"{self.losses[-1]:.2f}, held-out {self.val_loss:.3f} nats/char)")


def _encode(text: str, chars: str):
    import torch

    index = {c: i for i, c in enumerate(chars)}
    unknown = sorted(set(text) - set(index))
    if unknown:
        raise LabkitUsageError(f"characters the model does not know: {''.join(unknown)!r}")
    return torch.tensor([index[c] for c in text], dtype=torch.long)


def char_loss(model, ids, seq_len: int = 128) -> float:
    """Mean next-character cross-entropy (nats) over ``ids`` in chunks of ``seq_len``, the state carried over."""
    import torch

    total, n, state = 0.0, 0, None
    with torch.no_grad():
        for i in range(0, len(ids) - 1, seq_len):
            x = ids[i:i + seq_len][None]
            y = ids[i + 1:i + 1 + seq_len][None]
            x = x[:, :y.shape[1]]
            logits, state = model(x, state)
            total += float(torch.nn.functional.cross_entropy(logits[0], y[0], reduction="sum"))
            n += y.shape[1]
    return total / n


def train_char(kind: str, text: str, val_text: str, steps: int = 200, seq_len: int = 64, batch: int = 32,
               hidden: int = 128, lr: float = 3e-3, seed: int = 0, sample_every: int = 0, sample_len: int = 80,
               on_progress: Callable[[Progress], None] | None = None) -> CharRun:
    """Train a character-level ``kind`` (``rnn``, ``lstm``, ``gru``) model on random windows of ``text`` with Adam
    (gradients clipped to norm 1). Every ``sample_every`` steps (and at the end) a sample is drawn and reported
    through ``on_progress`` (``Progress.item``: the sample)."""
    if kind not in KINDS:
        raise LabkitUsageError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if steps < 1 or seq_len < 2 or batch < 1 or len(text) <= seq_len + 1:
        raise LabkitUsageError("need steps ≥ 1, seq_len ≥ 2, batch ≥ 1 and a text longer than seq_len + 1")
    with one_thread():
        return _train_char(kind, text, val_text, steps, seq_len, batch, hidden, lr, seed, sample_every, sample_len,
                           on_progress)


def _train_char(kind, text, val_text, steps, seq_len, batch, hidden, lr, seed, sample_every, sample_len,
                on_progress) -> CharRun:
    import torch

    report = Reporter(on_progress)
    chars = "".join(sorted(set(text) | set(val_text)))
    ids, val_ids = _encode(text, chars), _encode(val_text, chars)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = CharLM(len(chars), kind, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    offsets = torch.arange(seq_len + 1)
    record, losses, samples = [], [], []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        start = torch.randint(0, len(ids) - seq_len - 1, (batch,), generator=g)
        window = ids[start[:, None] + offsets]
        logits, _ = model(window[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(chars)), window[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        record.append(step)
        losses.append(float(loss.detach()))
        if (sample_every and step % sample_every == 0) or step == steps:
            text_ = sample_chars(model, chars, "\n", sample_len, seed=seed) if sample_every else ""
            if sample_every:
                samples.append((step, text_))
            report(Progress("train", step, steps, "done" if step == steps else "running",
                            f"{kind} step {step}: loss {losses[-1]:.3f}", item=text_, info={"loss": losses[-1]}))
    model.eval()
    val = char_loss(model, val_ids)
    return CharRun(kind, model, chars, record, losses, val, samples, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------ one LSTM step
def lstm_step(x, h, c, cell):
    """One step of ``cell`` (a ``torch.nn.LSTMCell``) as torch computes it: the reference."""
    return cell(x, (h, c))


def lstm_cell_of(model):
    """A ``torch.nn.LSTMCell`` holding the weights of a char LSTM's (first) layer, to step it one character at a
    time."""
    import torch

    if getattr(model, "kind", None) != "lstm":
        raise LabkitUsageError("lstm_cell_of needs a char model of kind 'lstm'")
    rnn = model.rnn
    cell = torch.nn.LSTMCell(rnn.input_size, rnn.hidden_size)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(rnn, f"{name}_l0"))
    return cell


def agrees_with_lstm_cell(fn, trials: int = 12, seed: int = 9) -> bool:
    """Does ``fn(x, h, c, cell)`` return ``(h', c')`` as ``torch.nn.LSTMCell`` does, for cells and batch sizes the
    learner never saw (weights scaled up so the gates saturate and a swapped gate shows)?"""
    import torch

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    for t in range(trials):
        n_in, n_h, b = 1 + t % 5, 2 + (3 * t) % 7, 1 + t % 4
        cell = torch.nn.LSTMCell(n_in, n_h)
        with torch.no_grad():
            for p in cell.parameters():
                p.mul_(1 + t % 3)
        x, h, c = (torch.randn(b, n_in, generator=g), torch.randn(b, n_h, generator=g),
                   torch.randn(b, n_h, generator=g))
        with torch.no_grad():
            want_h, want_c = cell(x, (h, c))
            try:
                got_h, got_c = fn(x.clone(), h.clone(), c.clone(), cell)
            except Exception:  # noqa: BLE001 - a learner's bug is a wrong answer, not a crash
                return False
        if not (isinstance(got_h, torch.Tensor) and isinstance(got_c, torch.Tensor)):
            return False
        if got_h.shape != want_h.shape or got_c.shape != want_c.shape:
            return False
        if not (torch.allclose(got_h, want_h, atol=1e-5) and torch.allclose(got_c, want_c, atol=1e-5)):
            return False
    return True


def sample_chars(model, chars: str, prompt: str = "\n", n: int = 80, temperature: float = 0.8, seed: int = 0,
                 step: Callable | None = None) -> str:
    """``n`` characters sampled after ``prompt``. With ``step`` (a function ``(x, h, c, cell) -> (h, c)``) an LSTM
    model is run one character at a time through ``step`` with its own weights (``lstm_cell_of``)."""
    import torch

    if not temperature > 0:
        raise LabkitUsageError("temperature must be > 0")
    g = torch.Generator().manual_seed(seed)
    ids = _encode(prompt, chars)
    out = []
    with torch.no_grad():
        if step is None:
            logits, state = model(ids[None])
            last = logits[0, -1]
        else:
            cell = lstm_cell_of(model)
            h = torch.zeros(1, cell.hidden_size)
            c = torch.zeros(1, cell.hidden_size)
            for i in ids.tolist():
                h, c = step(model.embed.weight[i][None], h, c, cell)
            last = model.head(h)[0]
        for _ in range(n):
            nxt = int(torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=g))
            out.append(chars[nxt])
            if step is None:
                logits, state = model(torch.tensor([[nxt]]), state)
                last = logits[0, -1]
            else:
                h, c = step(model.embed.weight[nxt][None], h, c, cell)
                last = model.head(h)[0]
    return "".join(out)


def input_gradients(model, chars: str, text: str) -> list[float]:
    """How strongly the loss on the *last* character of ``text`` depends on each earlier input character: the norm
    of its gradient with respect to each position's input vector, the last position first (distance 0, 1, ...).
    A vanilla RNN's falls off fast with distance (vanishing gradients); gated cells keep more of it."""
    import torch

    ids = _encode(text, chars)
    x = model.embed(ids[None, :-1]).detach().requires_grad_(True)
    out, _ = model.rnn(x)
    logits = model.head(out[:, -1])
    loss = torch.nn.functional.cross_entropy(logits, ids[None, -1])
    loss.backward()
    norms = x.grad[0].norm(dim=-1)
    return [float(v) for v in norms.flip(0)]
