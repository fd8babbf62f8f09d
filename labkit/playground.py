"""The training playground's engine: a small multilayer perceptron learns to separate two classes of 2-D points.

    >>> from labkit import playground
    >>> r = playground.train(dataset="spiral", depth=3, width=32, optimizer="adam", lr=0.01, steps=400)
    >>> r.loss[-1], r.test_accuracy, r.grid.shape          # plain numbers: a script needs no widget
    >>> playground.train(r.settings, optimizer="sgd")      # the same run with one setting changed

One call = one run = one :class:`TrainResult` (loss history, held-out loss, accuracies, the decision boundary on a
grid, the trained model). Every choice lives in a :class:`Settings`, validated on construction: the dataset
(``moons``, ``circles``, ``spiral``, ``xor``), depth and width, activation, initialisation, batch or layer norm,
dropout, residual connections, the optimiser (``sgd``, ``momentum``, ``adam``, ``adamw``, ``rmsprop``), learning
rate and schedule, weight decay, L1, gradient clipping, batch size and bf16 autocast.

``train`` reports progress through ``on_progress`` (``labkit.watch.Progress``, kind ``"train"``; ``item`` is the
result so far, decision boundary included) and ends at the next step once ``stop.is_set()`` (a
``threading.Event`` or anything with ``is_set``): that is how the playground widget (``labkit.widgets.playground``)
trains in a background thread, draws the boundary live and stops. ``layer_stats`` measures each hidden layer's
activations and gradients (initialisation, vanishing and exploding gradients).

Plain Python: no IPython, no widget; torch is imported inside the functions that use it.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .errors import LabkitUsageError
from .viewable import Viewable
from .watch import OnProgress, Progress, Reporter

DATASETS = ("moons", "circles", "spiral", "xor")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu")
INITS = ("default", "small", "xavier", "he", "large")
NORMS = ("none", "batch", "layer")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16")


# ------------------------------------------------------------------------------------------------------- data
def dataset(name: str = "moons", n: int = 200, noise: float = 0.1, seed: int = 0):
    """``n`` points of a 2-D two-class dataset: ``(X, y)``, float32 ``(n, 2)`` and int64 ``(n,)`` numpy arrays,
    classes balanced, coordinates within about [-1.5, 1.5]. The same name, size, noise and seed give the same
    points."""
    import numpy as np

    if name not in DATASETS:
        raise LabkitUsageError(f"dataset={name!r} is not a dataset here; choose one of {', '.join(DATASETS)}")
    if n < 2:
        raise LabkitUsageError(f"n={n}: a dataset needs at least 2 points (one per class)")
    rng = np.random.default_rng(seed)
    half = n // 2
    y = np.array([0] * (n - half) + [1] * half, dtype=np.int64)
    if name == "moons":  # two interleaved half circles (as sklearn's make_moons), centred
        t = rng.uniform(0, math.pi, n)
        X = np.where(y[:, None] == 0, np.c_[np.cos(t), np.sin(t)], np.c_[1 - np.cos(t), 0.5 - np.sin(t)])
        X = (X - [0.5, 0.25]) * 1.1
    elif name == "circles":  # a disc inside a ring
        t = rng.uniform(0, 2 * math.pi, n)
        r = np.where(y == 0, 1.0, 0.45)
        X = np.c_[r * np.cos(t), r * np.sin(t)]
    elif name == "spiral":  # two arms, each turning 1.5 times around the centre
        r = rng.uniform(0.08, 1.0, n)
        theta = 3 * math.pi * r + math.pi * y
        X = np.c_[r * np.cos(theta), r * np.sin(theta)] * 1.3
    else:  # xor: the class is the sign of x * y
        X = rng.uniform(-1.2, 1.2, (n, 2))
        X += np.sign(X) * 0.08  # a small margin round the axes
        y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    X = X + rng.normal(0, noise, X.shape)
    order = rng.permutation(n)
    return X[order].astype(np.float32), y[order]


# --------------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """Everything one run depends on. Invalid values raise ``LabkitUsageError`` saying what would work."""

    dataset: str = "moons"
    n: int = 200  # training points (the held-out set has as many, drawn with another seed)
    noise: float = 0.1
    depth: int = 2  # hidden layers
    width: int = 16  # units per hidden layer
    activation: str = "relu"
    init: str = "default"  # torch's default, "small" (std 0.01), "xavier", "he", "large" (std 1)
    norm: str = "none"  # "batch" or "layer": after each hidden Linear, before the activation
    dropout: float = 0.0
    residual: bool = False  # hidden layers after the first add their input back (x + f(x))
    optimizer: str = "adam"
    lr: float = 0.01
    momentum: float = 0.9  # for "momentum" (SGD with momentum)
    weight_decay: float = 0.0
    l1: float = 0.0  # adds l1 * sum |w| over the weight matrices to the loss
    schedule: str = "constant"  # or "cosine" (to 0 at the last step, after `warmup` linear steps)
    warmup: int = 0
    clip: float = 0.0  # gradient clipping: the global norm is scaled down to `clip` (0: no clipping)
    batch_size: int = 32  # 0: the whole training set every step
    steps: int = 300
    precision: str = "fp32"  # "bf16": the forward pass under torch.autocast(bfloat16) on the CPU
    seed: int = 0
    eval_every: int = 10  # held-out loss every this many steps
    grid: int = 60  # decision-boundary resolution (grid x grid points)

    def __post_init__(self):
        for name, allowed in (("dataset", DATASETS), ("activation", ACTIVATIONS), ("init", INITS),
                              ("norm", NORMS), ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                              ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise LabkitUsageError(f"{name}={getattr(self, name)!r} is not known; choose one of "
                                       f"{', '.join(allowed)}")
        ints = {"n": (4, 100_000), "depth": (1, 64), "width": (1, 4096), "warmup": (0, 10**7),
                "batch_size": (0, 10**6), "steps": (1, 10**7), "eval_every": (1, 10**7), "grid": (2, 400)}
        for name, (lo, hi) in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise LabkitUsageError(f"{name}={v!r}: give a whole number from {lo} to {hi}")
        nonneg = ("noise", "lr", "momentum", "weight_decay", "l1", "clip")
        for name in nonneg:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise LabkitUsageError(f"{name}={v!r}: give a number >= 0")
        if self.lr == 0:
            raise LabkitUsageError("lr=0 never moves a weight; try 0.01 (adam) or 0.1 (sgd)")
        if not 0 <= self.dropout < 1:
            raise LabkitUsageError(f"dropout={self.dropout!r}: the fraction of units dropped, from 0 up to (not "
                                   f"including) 1, e.g. 0.2")
        if not isinstance(self.seed, int):
            raise LabkitUsageError(f"seed={self.seed!r}: give a whole number")

    def replace(self, **changes) -> "Settings":
        """A copy with some settings changed (unknown names raise ``LabkitUsageError``)."""
        return replace(self, **_known(changes))

    def as_dict(self) -> dict:
        return asdict(self)


def _known(changes: dict) -> dict:
    names = {f.name for f in fields(Settings)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise LabkitUsageError(f"unknown setting(s) {', '.join(unknown)}; the settings are: {', '.join(sorted(names))}")
    return changes


def settings(base: "Settings | dict | None" = None, **changes) -> Settings:
    """``Settings`` from a Settings, a dict of settings (e.g. the widget's) or nothing, with ``changes`` applied."""
    if base is None:
        return Settings(**_known(changes))
    if isinstance(base, Settings):
        return base.replace(**changes)
    if isinstance(base, dict):
        return Settings(**_known({**base, **changes}))
    raise LabkitUsageError(f"settings must be a playground.Settings or a dict of settings, not {type(base).__name__}")


# ------------------------------------------------------------------------------------------------------ model
def _activation(name: str):
    from torch import nn

    return {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
            "gelu": nn.GELU, "silu": nn.SiLU}[name]()


def _init_linear(linear, how: str) -> None:
    import torch

    if how == "default":
        return
    with torch.no_grad():
        if how == "small":
            linear.weight.normal_(0, 0.01)
        elif how == "large":
            linear.weight.normal_(0, 1.0)
        elif how == "xavier":
            torch.nn.init.xavier_normal_(linear.weight)
        elif how == "he":
            torch.nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        linear.bias.zero_()


def build_model(s: Settings | None = None, **changes):
    """The network ``s`` describes (a ``torch.nn.Module``): ``depth`` hidden layers, each Linear -> norm ->
    activation -> dropout (``model.layers``, a ModuleList of Sequentials), then a Linear to one logit. Seeded by
    ``s.seed``."""
    import torch
    from torch import nn

    s = settings(s, **changes)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.residual = s.residual
            self.layers = nn.ModuleList()
            for i in range(s.depth):
                parts = [nn.Linear(2 if i == 0 else s.width, s.width)]
                if s.norm == "batch":
                    parts.append(nn.BatchNorm1d(s.width))
                elif s.norm == "layer":
                    parts.append(nn.LayerNorm(s.width))
                parts.append(_activation(s.activation))
                if s.dropout:
                    parts.append(nn.Dropout(s.dropout))
                self.layers.append(nn.Sequential(*parts))
            self.out = nn.Linear(s.width, 1)

        def forward(self, x):
            for i, layer in enumerate(self.layers):
                x = x + layer(x) if (self.residual and i > 0) else layer(x)
            return self.out(x).squeeze(-1)

        def linears(self):
            return [layer[0] for layer in self.layers] + [self.out]

    torch.manual_seed(s.seed)
    model = MLP()
    for lin in model.linears():
        _init_linear(lin, s.init)
    return model


def make_optimizer(s: Settings, params):
    """The torch optimiser ``s.optimizer`` names, with ``s.lr`` and ``s.weight_decay``."""
    import torch

    params = list(params)
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, weight_decay=s.weight_decay, foreach=True)
    if s.optimizer == "momentum":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, foreach=True)
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay, foreach=True)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay, foreach=True)
    return torch.optim.RMSprop(params, lr=s.lr, weight_decay=s.weight_decay, foreach=True)


def lr_factor(s: Settings, step: int) -> float:
    """The learning-rate multiplier at ``step`` (0-based): linear warm-up, then constant or cosine to 0."""
    if s.warmup and step < s.warmup:
        return (step + 1) / s.warmup
    if s.schedule == "constant":
        return 1.0
    span = max(1, s.steps - s.warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - s.warmup) / span)))


# ----------------------------------------------------------------------------------------------------- result
@dataclass
class TrainResult(Viewable):
    """One run of the playground: the curves, the accuracies, the decision boundary and the trained model."""

    settings: Settings
    loss: list[float] = field(default_factory=list)  # training (mini-batch) loss at steps 1, 2, ...
    grad_norm: list[float] = field(default_factory=list)  # global gradient norm at each step, before clipping
    test_steps: list[int] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)  # held-out loss at test_steps
    train_accuracy: float = float("nan")
    test_accuracy: float = float("nan")
    step: int = 0  # steps taken
    seconds: float = 0.0
    stopped: bool = False  # ended early by `stop`
    diverged: bool = False  # the loss became inf or nan
    grid: Any = field(default=None, repr=False)  # (grid, grid) numpy float32: P(class 1); row 0 = lowest y
    extent: tuple = (-1.0, 1.0, -1.0, 1.0)  # x min, x max, y min, y max of the grid
    X: Any = field(default=None, repr=False)
    y: Any = field(default=None, repr=False)
    X_test: Any = field(default=None, repr=False)
    y_test: Any = field(default=None, repr=False)
    model: Any = field(default=None, repr=False)

    @property
    def steps(self) -> list[int]:
        return list(range(1, len(self.loss) + 1))

    @property
    def state(self) -> str:
        return "diverged" if self.diverged else "stopped" if self.stopped else "done"

    @property
    def best_step(self) -> int | None:
        """The evaluation step with the lowest held-out loss (where early stopping would have kept the model)."""
        finite = [(l, s) for s, l in zip(self.test_steps, self.test_loss) if math.isfinite(l)]
        return min(finite)[1] if finite else None

    def summary(self) -> str:
        s = self.settings
        last = f"{self.loss[-1]:.4f}" if self.loss else "-"
        test = f"{self.test_loss[-1]:.4f}" if self.test_loss else "-"
        return (f"playground run on {s.dataset} ({s.depth}x{s.width} {s.activation}, {s.optimizer} lr {s.lr:g}): "
                f"{self.state} after {self.step}/{s.steps} steps in {self.seconds:.1f} s; loss {last}, held-out "
                f"loss {test}; accuracy {self.train_accuracy:.1%} train, {self.test_accuracy:.1%} held-out")

    def __repr__(self):
        return self.summary()


def _grid_points(X, res: int, margin: float = 0.3):
    import numpy as np

    lo, hi = X.min(0) - margin, X.max(0) + margin
    xs, ys = np.linspace(lo[0], hi[0], res), np.linspace(lo[1], hi[1], res)
    gx, gy = np.meshgrid(xs, ys)  # row i = ys[i] (lowest y first)
    pts = np.c_[gx.ravel(), gy.ravel()].astype(np.float32)
    return pts, (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))


def _evaluate(model, result: TrainResult, grid_pts, res: int, step: int | None, grid: bool = True) -> None:
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    with torch.no_grad():
        for X, y, name in ((result.X, result.y, "train"), (result.X_test, result.y_test, "test")):
            logits = model(torch.from_numpy(X)).float()
            target = torch.from_numpy(y).float()
            acc = float(((logits > 0).long() == torch.from_numpy(y)).float().mean())
            if name == "train":
                result.train_accuracy = acc
            else:
                result.test_accuracy = acc
                if step is not None:
                    result.test_steps.append(step)
                    result.test_loss.append(float(F.binary_cross_entropy_with_logits(logits, target)))
        if grid:
            result.grid = torch.sigmoid(model(torch.from_numpy(grid_pts)).float()).reshape(res, res).numpy()
    model.train(was_training)


def train(settings_: Settings | dict | None = None, *, on_progress: OnProgress | None = None, stop=None,
          report_every: int = 10, threads: int | None = 1, clip_fn=None, **changes) -> TrainResult:
    """Train the network ``settings_`` (with ``changes``) describes on its dataset; return a :class:`TrainResult`.

    ``on_progress`` gets a ``Progress`` (kind ``"train"``) every ``report_every`` steps and at the end, whose
    ``item`` is the result so far (the decision boundary included); ``stop`` (anything with ``is_set()``) ends the
    run at the next step. A loss that becomes inf or nan ends the run too (``result.diverged``).

    ``clip_fn(params, max_norm)`` clips the gradients when ``clip`` is set (default:
    ``torch.nn.utils.clip_grad_norm_``; a lab passes the learner's own).

    ``threads``: torch's intra-op threads during the run (restored after it). These networks are far too small to
    share one matrix product among cores, and on a busy machine a second thread mostly waits: measured 7x slower
    with 2 threads than with 1 while another job used both cores. ``None`` leaves torch's setting alone."""
    import torch

    s = settings(settings_, **changes)
    if not isinstance(report_every, int) or report_every < 1:
        raise LabkitUsageError(f"report_every={report_every!r}: give a whole number of steps >= 1")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise LabkitUsageError(f"threads={threads!r}: give a whole number >= 1, or None for torch's own setting")
    before = torch.get_num_threads()
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        return _train(s, on_progress, stop, report_every, clip_fn)
    finally:
        if threads is not None and threads != before:
            torch.set_num_threads(before)


def _train(s: Settings, on_progress, stop, report_every: int, clip_fn) -> TrainResult:
    import numpy as np
    import torch
    import torch.nn.functional as F

    if clip_fn is not None and not callable(clip_fn):
        raise LabkitUsageError(f"clip_fn must be a function (params, max_norm), not {type(clip_fn).__name__}")
    clip_fn = clip_fn or torch.nn.utils.clip_grad_norm_
    reporter = Reporter(on_progress)
    X, y = dataset(s.dataset, s.n, s.noise, s.seed)
    X_test, y_test = dataset(s.dataset, s.n, s.noise, s.seed + 10_000)
    model = build_model(s)
    opt = make_optimizer(s, model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(s, i))
    grid_pts, extent = _grid_points(X, s.grid)
    result = TrainResult(s, X=X, y=y, X_test=X_test, y_test=y_test, model=model, extent=extent)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).float()
    gen = torch.Generator().manual_seed(s.seed)
    batch = s.batch_size if 0 < s.batch_size < s.n else s.n
    weights = [lin.weight for lin in model.linears()]
    params = [p for p in model.parameters()]
    order, pos = torch.randperm(s.n, generator=gen), 0
    t0 = time.perf_counter()

    def report(state: str, message: str = "") -> None:
        if not reporter:
            return
        _evaluate(model, result, grid_pts, s.grid, None)
        result.seconds = time.perf_counter() - t0
        reporter(Progress("train", result.step, s.steps, state, message, item=result, info={
            "loss": result.loss[-1] if result.loss else None,
            "test_loss": result.test_loss[-1] if result.test_loss else None,
            "train_accuracy": result.train_accuracy, "test_accuracy": result.test_accuracy,
            "elapsed_s": result.seconds}))

    report("starting")
    model.train()
    for step in range(1, s.steps + 1):
        if stop is not None and stop.is_set():
            result.stopped = True
            break
        if pos + batch > s.n:  # a new epoch: a new order
            order, pos = torch.randperm(s.n, generator=gen), 0
        idx = order[pos:pos + batch]
        pos += batch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.precision == "bf16"):
            logits = model(Xt[idx])
        loss = F.binary_cross_entropy_with_logits(logits.float(), yt[idx])
        if s.l1:
            loss = loss + s.l1 * sum(w.abs().sum() for w in weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        value = loss.item()
        norm = _total_norm(params)
        result.loss.append(value)
        result.grad_norm.append(norm)
        result.step = step
        if not (math.isfinite(value) and math.isfinite(norm)):
            result.diverged = True
            break
        if s.clip:
            clip_fn(params, s.clip)
        opt.step()
        sched.step()
        if step % s.eval_every == 0 or step == s.steps:
            _evaluate(model, result, grid_pts, s.grid, step, grid=False)
        if step % report_every == 0 and step < s.steps:
            report("running")
    result.seconds = time.perf_counter() - t0
    if result.diverged:
        message = f"the loss became {result.loss[-1]} at step {result.step}: the run diverged"
    elif result.stopped:
        message = f"stopped at step {result.step}"
    else:
        message = ""
    _evaluate(model, result, grid_pts, s.grid, None if (result.test_steps and result.test_steps[-1] == result.step)
              or result.diverged else result.step)
    result.seconds = time.perf_counter() - t0
    if not np.isfinite(result.grid).all():  # a diverged network: no boundary to draw
        result.grid = np.nan_to_num(result.grid, nan=0.5, posinf=0.5, neginf=0.5)
    if reporter:
        reporter(Progress("train", result.step, s.steps, "stopped" if result.stopped or result.diverged else "done",
                          message, item=result, info={
                              "loss": result.loss[-1] if result.loss else None,
                              "test_loss": result.test_loss[-1] if result.test_loss else None,
                              "train_accuracy": result.train_accuracy, "test_accuracy": result.test_accuracy,
                              "elapsed_s": result.seconds}))
    return result


def _total_norm(params) -> float:
    """The global L2 norm of the parameters' gradients (what clipping compares with its threshold)."""
    import torch

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))


# ------------------------------------------------------------------------------------------------ layer stats
@dataclass
class LayerStats:
    """Per hidden layer, after one forward and backward pass: the activations' mean and standard deviation, the
    standard deviation of the gradient that reaches them, and the norm of the gradient of the layer's weights."""

    settings: Settings
    act_mean: list[float]
    act_std: list[float]
    grad_std: list[float]
    weight_grad_norm: list[float]

    def __repr__(self):
        rows = [f"layer {i + 1:>2}: activation mean {m:+.3f} std {s:.3g}   gradient std {g:.3g}   "
                f"weight-gradient norm {w:.3g}"
                for i, (m, s, g, w) in enumerate(zip(self.act_mean, self.act_std, self.grad_std,
                                                     self.weight_grad_norm))]
        return "\n".join(rows)


def layer_stats(s: Settings | dict | None = None, model=None, n: int = 512, **changes) -> LayerStats:
    """Measure each hidden layer of ``model`` (default: ``build_model(s)``, untrained) on ``n`` points of the
    settings' dataset, with the training loss."""
    import torch
    import torch.nn.functional as F

    s = settings(s, **changes)
    model = model if model is not None else build_model(s)
    X, y = dataset(s.dataset, n, s.noise, s.seed)
    seen = []

    def keep(module, inputs, output):
        output.retain_grad()
        seen.append(output)

    hooks = [layer.register_forward_hook(keep) for layer in model.layers]
    try:
        model.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(model(torch.from_numpy(X)), torch.from_numpy(y).float())
        loss.backward()
    finally:
        for h in hooks:
            h.remove()
    return LayerStats(
        s, [float(a.detach().mean()) for a in seen], [float(a.detach().std()) for a in seen],
        [float(a.grad.std()) if a.grad is not None else 0.0 for a in seen],
        [float(layer[0].weight.grad.norm()) if layer[0].weight.grad is not None else 0.0 for layer in model.layers])
