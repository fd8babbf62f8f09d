"""labkit.playground (lab 01's training engine), its widget's Python half, and the references lab 01's exercises
are checked against: each reference agrees with torch, and each check rejects the mistakes learners make."""
from __future__ import annotations

import math
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit import playground as P
from labkit import reference as R
from labkit.errors import LabkitUsageError

ROOT = Path(__file__).resolve().parent.parent
LAB01 = ROOT / "labs" / "01_neural_networks.ipynb"


# ------------------------------------------------------------------------------------------------ the engine
def test_the_engine_imports_without_torch_or_ipython():
    code = "import sys, labkit.playground; print('torch' in sys.modules, 'IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("name", P.DATASETS)
def test_datasets_are_balanced_seeded_and_bounded(name):
    X, y = P.dataset(name, 200, noise=0.1, seed=3)
    assert X.shape == (200, 2) and X.dtype == np.float32 and y.shape == (200,)
    assert 80 <= int(y.sum()) <= 120 and set(np.unique(y)) == {0, 1}
    assert np.abs(X).max() < 2.5
    X2, y2 = P.dataset(name, 200, noise=0.1, seed=3)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    assert not np.array_equal(X, P.dataset(name, 200, noise=0.1, seed=4)[0])


@pytest.mark.parametrize("bad,match", [
    (dict(dataset="swirl"), "dataset='swirl'.*moons, circles, spiral, xor"),
    (dict(activation="softmax"), "activation.*relu"),
    (dict(optimizer="lbfgs"), "optimizer.*adamw"),
    (dict(lr=-1.0), "lr=-1.0"),
    (dict(lr=0.0), "lr=0"),
    (dict(dropout=1.0), "dropout"),
    (dict(depth=0), "depth=0"),
    (dict(steps=2.5), "steps=2.5"),
    (dict(wdith=3), "unknown setting.*wdith.*width"),
])
def test_bad_settings_say_what_would_work(bad, match):
    with pytest.raises(LabkitUsageError, match=match):
        P.settings(None, **bad)


def test_train_learns_and_returns_plain_results():
    r = P.train(dataset="moons", steps=150, grid=20)
    assert len(r.loss) == len(r.grad_norm) == r.step == 150 and not r.stopped and not r.diverged
    assert np.mean(r.loss[-10:]) < 0.5 * np.mean(r.loss[:10])
    assert r.train_accuracy >= 0.9 and r.test_accuracy >= 0.9
    assert r.test_steps[-1] == 150 and len(r.test_steps) == len(r.test_loss) == 15
    assert r.grid.shape == (20, 20) and 0 <= r.grid.min() and r.grid.max() <= 1
    x0, x1, y0, y1 = r.extent
    assert x0 < r.X[:, 0].min() and r.X[:, 0].max() < x1 and y0 < r.X[:, 1].min() and r.X[:, 1].max() < y1
    assert r.best_step in r.test_steps and "150/150 steps" in repr(r)
    again = P.train(r.settings)
    assert again.loss == r.loss  # same settings, same seed: the same run


@pytest.mark.parametrize("name,cls", [("sgd", "SGD"), ("momentum", "SGD"), ("adam", "Adam"), ("adamw", "AdamW"),
                                      ("rmsprop", "RMSprop")])
def test_optimisers_are_torchs(name, cls):
    s = P.Settings(optimizer=name, lr=0.05, weight_decay=0.01)
    opt = P.make_optimizer(s, P.build_model(s).parameters())
    assert type(opt).__name__ == cls
    group = opt.param_groups[0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.01
    if cls == "SGD":
        assert group["momentum"] == (0.9 if name == "momentum" else 0)


def test_model_follows_its_settings():
    m = P.build_model(depth=3, width=8, norm="layer", dropout=0.2, activation="gelu", init="he")
    assert len(m.layers) == 3 and [type(x).__name__ for x in m.layers[1]] == ["Linear", "LayerNorm", "GELU", "Dropout"]
    assert float(m.layers[1][0].bias.detach().abs().sum()) == 0.0  # He: biases zero
    big = P.build_model(depth=1, width=2000, init="he")
    assert float(big.out.weight.detach().std()) == pytest.approx(math.sqrt(2 / 2000), rel=0.1)  # 2000 draws
    assert P.build_model(residual=True, depth=2)(torch.zeros(5, 2)).shape == (5,)


def test_progress_reports_and_stop_ends_the_run():
    seen, stop = [], threading.Event()

    def on_progress(p):
        seen.append((p.kind, p.state, p.done, p.item.grid is not None))
        if p.done >= 20:
            stop.set()

    r = P.train(steps=500, grid=8, on_progress=on_progress, stop=stop, report_every=5)
    assert r.stopped and 20 <= r.step <= 21 and r.state == "stopped"
    assert seen[0][:2] == ("train", "starting") and seen[-1][1] == "stopped"
    assert all(kind == "train" and has_grid for kind, _, _, has_grid in seen)


def test_a_diverging_run_ends_and_clipping_saves_it():
    risky = dict(dataset="moons", depth=8, width=64, init="he", optimizer="sgd", lr=1.0, steps=60, grid=8)
    wild = P.train(**risky)
    assert wild.diverged and wild.step < 60 and not math.isfinite(wild.loss[-1])
    assert np.isfinite(wild.grid).all()
    calls = []

    def clip(params, max_norm):
        calls.append(max_norm)
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    tame = P.train(**risky, clip=1.0, clip_fn=clip)
    assert not tame.diverged and tame.step == 60 and calls == [1.0] * 60


def test_schedule_warmup_then_cosine():
    s = P.Settings(steps=100, schedule="cosine", warmup=10)
    f = [P.lr_factor(s, i) for i in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert f[-1] < 0.01 and all(a >= b for a, b in zip(f[10:], f[11:]))
    assert P.lr_factor(P.Settings(), 50) == 1.0


def test_layer_stats_show_vanishing_and_healthy_gradients():
    small = P.layer_stats(depth=10, width=32, activation="tanh", init="small")
    he = P.layer_stats(depth=10, width=32, activation="relu", init="he")
    assert len(small.act_std) == len(small.grad_std) == len(small.weight_grad_norm) == 10
    assert small.grad_std[0] / small.grad_std[-1] < 1e-6 and small.act_std[-1] < 1e-6
    assert 0.1 < he.grad_std[0] / he.grad_std[-1] < 10 and 0.2 < he.act_std[-1] / he.act_std[0] < 5


def test_bf16_autocast_trains_and_threads_are_restored():
    before = torch.get_num_threads()
    r = P.train(steps=20, precision="bf16", grid=8, threads=1)
    assert all(math.isfinite(v) for v in r.loss) and torch.get_num_threads() == before


# ------------------------------------------------------------------------------------------------ references
def test_autograd_reference_agrees_and_the_check_rejects_classic_bugs():
    assert R.agrees_with_autograd(R.Value)

    class Overwrites(R.Value):  # `=` instead of `+=`: a node used twice keeps one gradient
        def __add__(self, other):
            other = other if isinstance(other, R.Value) else Overwrites(other)
            out = Overwrites(self.data + other.data, (self, other))

            def backward():
                self.grad = out.grad
                other.grad = out.grad
            out._backward = backward
            return out
        __radd__ = __add__

    class NoOrder:  # right local derivatives, but backward recurses without a topological order
        def __init__(self, data, children=()):
            self.data, self.grad, self._children, self._backward = float(data), 0.0, children, lambda: None

        def _op(self, data, children, local):
            out = NoOrder(data, children)

            def backward():
                for child, d in zip(children, local):
                    child.grad += d * out.grad
            out._backward = backward
            return out

        def __add__(self, o):
            o = o if isinstance(o, NoOrder) else NoOrder(o)
            return self._op(self.data + o.data, (self, o), (1.0, 1.0))

        def __mul__(self, o):
            o = o if isinstance(o, NoOrder) else NoOrder(o)
            return self._op(self.data * o.data, (self, o), (o.data, self.data))
        __radd__, __rmul__ = __add__, __mul__

        def tanh(self):
            t = math.tanh(self.data)
            return self._op(t, (self,), (1 - t * t,))

        def relu(self):
            return self._op(max(self.data, 0.0), (self,), (float(self.data > 0),))

        def backward(self):
            self.grad = 1.0

            def walk(v):
                v._backward()
                for c in v._children:
                    walk(c)
            walk(self)

    class LeftOnly(R.Value):  # `2 * a` unsupported
        __rmul__ = None

    for bad in (Overwrites, NoOrder, LeftOnly):
        assert not R.agrees_with_autograd(bad), bad.__name__


def test_loss_optimiser_init_and_clip_references_agree_with_torch_and_reject_mistakes():
    assert R.agrees_with_bce_with_logits(R.bce_with_logits)
    naive = lambda z, y: -(y * torch.log(torch.sigmoid(z)) + (1 - y) * torch.log(1 - torch.sigmoid(z))).mean()  # noqa: E731
    assert not R.agrees_with_bce_with_logits(naive)

    assert R.agrees_with_adamw(R.adamw_step)
    adam_l2 = lambda p, g, st, lr, b, eps, wd: R.adamw_step(p, g + wd * p, st, lr, b, eps, 0.0)  # noqa: E731
    assert not R.agrees_with_adamw(adam_l2)

    def no_bias_correction(p, g, st, lr, betas, eps, wd):
        st.setdefault("m", torch.zeros_like(p))
        st.setdefault("v", torch.zeros_like(p))
        st["m"] = betas[0] * st["m"] + (1 - betas[0]) * g
        st["v"] = betas[1] * st["v"] + (1 - betas[1]) * g * g
        return p * (1 - lr * wd) - lr * st["m"] / (st["v"].sqrt() + eps)
    assert not R.agrees_with_adamw(no_bias_correction)

    assert R.agrees_with_init_std(R.init_std)
    assert not R.agrees_with_init_std(lambda fi, fo, a: math.sqrt(1 / fi))

    assert R.agrees_with_clip_grad_norm(torch.nn.utils.clip_grad_norm_)

    def per_tensor(params, max_norm):
        for p in params:
            if p.grad is not None and float(p.grad.norm()) > max_norm:
                p.grad.mul_(max_norm / float(p.grad.norm()))
        return math.sqrt(sum(float((p.grad ** 2).sum()) for p in params if p.grad is not None))
    assert not R.agrees_with_clip_grad_norm(per_tensor)


# ------------------------------------------------------------------------------------------------ the widget
def test_widget_shows_a_result_and_trains_in_the_background():
    from labkit.widgets import playground as W

    r = P.train(dataset="xor", steps=30, grid=12)
    w = r.widget()
    assert isinstance(w, W.PlaygroundWidget) and w.settings["dataset"] == "xor" and w.grid_n == 12
    assert len(w.loss) == 30 * 4 and len(w.points) == 200 * 8 and len(w.labels) == 200
    assert w.status["state"] == "done" and w.status["step"] == 30
    bundle = r._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "data:image/png;base64," in bundle["text/html"]

    w.settings = {**w.settings, "dataset": "circles", "grid": 8}
    assert w.grid_n == 0 and w.loss == b""  # a new dataset clears the old run and shows its points
    # what the Train button sends: the settings it shows come with the command (a state update still held back
    # by the browser must not leave the run with stale settings)
    w._on_msg(w, {"cmd": "train", "settings": {**w.settings, "steps": 100000}}, [])
    for _ in range(200):
        if w.status.get("step", 0) >= 10:
            break
        threading.Event().wait(0.05)
    assert w.running and w.status["state"] == "running" and w.status["step"] >= 10
    w._on_msg(w, {"cmd": "stop"}, [])  # what the Stop button sends
    result = w.wait(30)
    assert not w.running and result.stopped and w.status["state"] == "stopped" and w.runs == 1
    assert result.settings.dataset == "circles" and result.settings.steps == 100000 and w.grid_n == 8
    assert w.settings["steps"] == 100000  # the controls follow the run


def test_widget_reports_bad_settings_instead_of_raising():
    from labkit.widgets.playground import playground

    w = playground(dataset="spiral")
    assert w.status["state"] == "ready" and len(w.labels) == 200
    w.settings = {**w.settings, "lr": -1}
    w.train()
    assert w.status["state"] == "error" and "lr=-1" in w.status["message"] and not w.running


def test_long_curves_are_thinned_for_the_browser():
    from labkit.widgets.playground import MAX_CURVE, _thin

    steps, values = _thin(list(range(10_001)))
    assert len(steps) <= MAX_CURVE + 1 and steps[-1] == 10_001 and values[-1] == 10_000


# ------------------------------------------------------------------------------------------------ the lab
@pytest.mark.slow
def test_student_version_of_lab01_runs_end_to_end(tmp_path):
    """`labkit student build`'s version of lab 01 (every exercise `...`) runs to the end in strict mode: each later
    cell uses the kit's own version until the learner writes theirs."""
    import os

    import nbformat
    from nbclient import NotebookClient

    from labkit import grading

    reports = grading.write_student_versions(tmp_path, None, [LAB01.name])
    assert reports[0].solutions >= 3, reports[0]
    student = tmp_path / LAB01.name
    assert "### BEGIN SOLUTION" not in student.read_text()
    nb = nbformat.read(str(student), as_version=4)
    old = os.environ.get("LABKIT_STRICT_EXERCISES")
    os.environ["LABKIT_STRICT_EXERCISES"] = "1"
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        if old is None:
            os.environ.pop("LABKIT_STRICT_EXERCISES", None)
        else:
            os.environ["LABKIT_STRICT_EXERCISES"] = old
    text = "\n".join(o.get("text", "") or "".join(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells for o in c.get("outputs", []))
    assert "not answered yet" in text and "using the kit's own" in text and "0/8 exercises correct" in text
