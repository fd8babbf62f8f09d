"""Lab 22's engine (labkit.ops) and MLflow tracking of fine-tuning runs (labkit.finetune.tracking, %finetune
--track): the paired test, MMD² and the drift threshold, the gate and the promotion rule, Prometheus parsing,
cost; the repository's own evaluation gate on the zoo's readers; the student version of lab 22 end to end."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from labkit import ops
from labkit.errors import LabkitUsageError
from conftest import lab_checkers

ROOT = Path(__file__).resolve().parents[1]
LAB22 = ROOT / "labs" / "22_llmops.ipynb"


# ------------------------------------------------------------------------------------------------ statistics
def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs():
    from scipy.stats import binom

    a = [True] * 10 + [False] * 5 + [True] * 3
    b = [False] * 10 + [False] * 5 + [True] * 3
    r = ops.reference_mcnemar(a, b)
    assert (r.b, r.c, r.discordant) == (10, 0, 10) and r.p_value == pytest.approx(2 / 1024)
    r = ops.reference_mcnemar(a[:12] + [False, True], b[:12] + [True, False])  # 11 vs 1
    assert r.p_value == pytest.approx(2 * binom.cdf(1, 12, 0.5))
    assert ops.reference_mcnemar([True, False], [True, False]).p_value == 1.0
    with pytest.raises(LabkitUsageError, match="`correct_a` and `correct_b`"):
        ops.reference_mcnemar([True], [True, False])
    res = ops.ab_test(a, b, "x", "y")
    assert res.acc_a == pytest.approx(13 / 18) and res.acc_b == pytest.approx(3 / 18)
    assert res.p_value == pytest.approx(2 / 1024) and (res.b, res.c) == (10, 0)
    lo, hi = res.diff_ci
    assert lo <= res.acc_b - res.acc_a <= hi < 0 and "McNemar" in res.summary("t")
    assert ops.wilson(0, 48)[0] == 0.0 and 0.05 < ops.wilson(0, 48)[1] < 0.1


def test_mmd2_matches_sklearn_and_the_permutation_threshold_holds_its_false_alarm_rate():
    from sklearn.metrics.pairwise import rbf_kernel

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 5)), rng.normal(size=(20, 5)) + 0.3
    g = 1 / (2 * 1.5 ** 2)
    kxx, kyy, kxy = rbf_kernel(X, X, gamma=g), rbf_kernel(Y, Y, gamma=g), rbf_kernel(X, Y, gamma=g)
    want = (kxx.sum() - 30) / (30 * 29) + (kyy.sum() - 20) / (20 * 19) - 2 * kxy.mean()
    assert ops.reference_mmd2(X, Y, 1.5) == pytest.approx(want, abs=1e-12)
    assert ops.median_bandwidth(np.array([[0.0], [1.0], [3.0]])) == pytest.approx(2.0)
    # no drift: fires about alpha of the time (20 trials at alpha 0.2: a generous band); a shift: always
    fired = [ops.drift_test(rng.normal(size=(25, 3)), rng.normal(size=(25, 3)), permutations=50, alpha=0.2,
                            seed=s).fired for s in range(20)]
    assert 0 <= sum(fired) <= 9
    d = ops.drift_test(rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + 1.0, permutations=50)
    assert d.fired and d.p_value < 0.05 and d.statistic > d.threshold == pytest.approx(np.quantile(d.null, 0.95))
    with pytest.raises(LabkitUsageError, match="`alpha`"):
        ops.drift_test(X, Y, alpha=1.5)


def test_gate_and_promotion_rule():
    rules = {"em": ("higher", 0.1), "loss": ("lower", 0.0)}
    base = {"em": 0.9, "loss": 5.0}
    assert ops.reference_gate({"em": 0.85, "loss": 4.0}, base, rules) == []
    assert ops.reference_gate({"em": 0.5, "loss": 5.5}, base, rules) == ["em", "loss"]
    assert ops.reference_gate({"em": 0.95}, base, rules) == ["loss"]  # not measured: fails
    with pytest.raises(LabkitUsageError, match="`rules`"):
        ops.reference_gate(base, base, {"em": ("up", 0.1)})
    cands = {"low_lr": {"em": 0.9, "loss": 4.5}, "mid_lr": {"em": 0.85, "loss": 3.0}, "high_lr": {"em": 0.1, "loss": 2.0}}
    d = ops.choose_champion(cands, base, rules, primary="loss", min_gain=0.1)
    assert d.promoted == "mid_lr" and d.reasons["high_lr"].startswith("blocked") and "em" in d.reasons["high_lr"]
    assert ops.choose_champion(cands, {"em": 0.9, "loss": 3.05}, rules, primary="loss", min_gain=0.1).promoted is None


def test_prometheus_scrape_histogram_quantiles_and_cost():
    from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

    # Prometheus' histogram_quantile: rank 0.5 x 10 = 5 falls in (0.1, 0.25] holding observations 4..8
    assert ops.histogram_quantile(0.5, [0.1, 0.25, math.inf], [4, 8, 10]) == pytest.approx(0.1 + 0.15 * 1 / 4)
    assert ops.histogram_quantile(0.99, [0.1, 0.25, math.inf], [4, 8, 10]) == 0.25  # in +Inf: the last bound
    reg = CollectorRegistry()
    h = Histogram("lat_seconds", "latency", ["endpoint"], registry=reg, buckets=(0.1, 0.2, 0.5))
    c = Counter("tok", "tokens", ["kind"], registry=reg)
    for v in (0.05, 0.15, 0.15, 0.3, 0.4):
        h.labels("chat").observe(v)
    c.labels("prompt").inc(7)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    try:
        fams = ops.scrape(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(5)
    lat = ops.histogram(fams, "lat_seconds", endpoint="chat")
    assert lat.count == 5 and lat.sum == pytest.approx(1.05) and lat.cumulative == [1, 3, 5, 5]
    assert 0.1 < lat.quantile(0.5) <= 0.2 and ops.counter(fams, "tok_total", kind="prompt") == 7
    assert ops.cost_per_1k(1000, 3.6) == pytest.approx(0.001)
    with pytest.raises(LabkitUsageError, match="`url`"):
        ops.send_traffic("http://example.com/v1", ["hi"])


# ------------------------------------------------------------------------------------------------ tracking
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import mlflow

    before = mlflow.get_tracking_uri()
    s = ops.tracking_store(tmp_path_factory.mktemp("mlflow"), experiment="t-ops")
    yield s
    mlflow.set_tracking_uri(before)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    import os

    from labkit.finetune import toy

    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("LABKIT_HOME")
    os.environ["LABKIT_HOME"] = str(home)
    model, tok = toy.model("micro", seed=0)
    yield model, tok, toy.model_folder(home / "toy-micro")
    if old is None:
        os.environ.pop("LABKIT_HOME", None)
    else:
        os.environ["LABKIT_HOME"] = old


ROWS = ops.qa_chats([{"context": f"Ana keeps her {w} in the attic.", "question": f"Where is the {w}?", "answer": "attic"}
                     for w in ("violin", "kettle", "lamp", "scarf", "ring", "map", "drum", "flute")])


def test_mlflow_callback_logs_a_run_and_marks_a_failed_one(store, toy):
    from transformers import TrainerCallback

    from labkit.errors import LabkitError
    from labkit.finetune import finetune
    from labkit.finetune.tracking import MlflowTracking

    model, tok, _ = toy
    r = finetune(model, ROWS, "lora", tokenizer=tok, rank=2, steps=3, batch=4, save_every=0, name="t_track",
                 output_dir=store.folder / "runs", callbacks=[MlflowTracking("t-ops", tags={"who": "test"})])
    client = store.client()
    run = client.get_run(r.tracking["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["who"] == "test"
    assert run.data.params["method"] == "lora" and run.data.params["rank"] == "2" and run.data.params["rows"] == "8"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    assert run.data.metrics["final_loss"] == pytest.approx(r.losses[-1]) and run.data.metrics["trainable_params"] > 0
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"run.json", "data.jsonl", "README.md", "adapter"} <= arts
    assert "tracked in MLflow" in r.summary()

    class Boom(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            raise RuntimeError("boom at step end")

    tracker = MlflowTracking("t-ops")
    with pytest.raises(LabkitError, match="boom"):
        finetune(model, ROWS, "lora", tokenizer=tok, rank=2, steps=3, batch=4, save_every=0, name="t_fail",
                 output_dir=store.folder / "runs", callbacks=[tracker, Boom()])
    failed = client.get_run(tracker.run_id)
    assert failed.info.status == "FAILED" and "boom" in failed.data.tags["labkit.error"]
    with pytest.raises(LabkitUsageError, match="`callbacks`"):
        finetune(model, ROWS, "lora", tokenizer=tok, steps=1, callbacks=[object()])
    with pytest.raises(LabkitUsageError, match="`experiment`"):
        MlflowTracking(" ")


def test_finetune_magic_track_option(ip, store, toy):
    _, _, folder = toy
    ip.user_ns["track_rows"] = ROWS
    r = ip.run_line_magic("finetune", f"--model {folder} --data track_rows --rank 2 --steps 2 --batch 4 "
                                      f"--save-every 0 --out t_magic --track t-ops-magic --quiet")
    run = store.client().get_run(r.tracking["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["max_steps"] == "2"
    exp = store.client().get_experiment_by_name("t-ops-magic")
    assert exp.experiment_id == r.tracking["experiment_id"]
    assert exp.artifact_location.startswith((store.folder / "artifacts").as_uri())  # beside the store, not ./mlruns


# ------------------------------------------------------------------------------------------------ the repo's gate
#: the zoo readers' figures when this gate was written (measured 2026-12-03 on these items): a zoo rebuild that
#: reads worse fails here. Tolerances cover a library update nudging a few greedy answers, not a regression.
ZOO_BASELINE = {"tiny-chat": {"in_world_em": 0.95, "out_of_world_em": 0.01},
                "tiny-chat-v2": {"in_world_em": 0.84, "out_of_world_em": 0.22}}
ZOO_RULES = {"in_world_em": ("higher", 0.05), "out_of_world_em": ("higher", 0.05)}


@pytest.fixture(scope="module")
def gate_items():
    return {"in_world": ops.qa_items("in-world", 100, seed=7, stream="lab22-ab"),
            "out_of_world": ops.qa_items("out-of-world", 100, seed=7, max_sentences=3, stream="lab22-ab")}


@pytest.mark.parametrize("model", sorted(ZOO_BASELINE))
def test_evaluation_gate_zoo_readers_do_not_regress(model, gate_items):
    """The repository's own evaluation gate (lab 22's, on lab 22's A/B items): exact match of each zoo reader,
    in-world and out-of-world, may not fall below its recorded figure by more than the tolerance."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        measured = ops.reader_metrics(model, gate_items)
    finally:
        torch.set_num_threads(threads)
    failed = ops.reference_gate(measured, ZOO_BASELINE[model], ZOO_RULES)
    assert not failed, f"{model} regressed on {failed}: measured {measured}, baseline {ZOO_BASELINE[model]}"


def test_the_gate_file_runs_under_pytest_and_fails_a_regressed_model(tmp_path, gate_items):
    """The lab's CI check: the written test file, run by pytest on a candidate, passes a model at its own baseline
    and fails one that regresses (tiny-base: no chat training)."""
    items = {"in_world": gate_items["in_world"][:20]}
    rules = {"in_world_em": ("higher", 0.1)}
    baseline = ops.reader_metrics("tiny-chat", items)
    test_file = ops.write_gate_test(tmp_path / "ci", baseline, rules, items)
    assert ops.run_gate(test_file, "tiny-chat", quiet=True).passed
    bad = ops.run_gate(test_file, "tiny-base", quiet=True)
    assert not bad.passed and bad.exit_code == 1


# ------------------------------------------------------------------------------------------------ the lab
def _lab_checkers() -> dict:
    return lab_checkers(LAB22, {"np": np, "ops": ops})


def test_the_lab_checkers_tell_right_from_wrong(capsys):
    from scipy.stats import binom, binomtest

    ns = _lab_checkers()
    gate, mcnemar, mmd = ns["_is_a_gate"], ns["_is_mcnemar"], ns["_is_mmd2"]
    assert gate(ops.reference_gate) and mmd(ops.reference_mmd2)
    assert mcnemar(lambda a, b: ops.reference_mcnemar(a, b).p_value)

    def strict(c, b, rules):  # a difference of exactly the tolerance fails
        return [m for m, (d, t) in rules.items() if m not in c or (c[m] <= b[m] - t if d == "higher" else c[m] >= b[m] + t)]

    def ignores_missing(c, b, rules):
        return [m for m in ops.reference_gate(c, b, rules) if m in c]

    def one_direction(c, b, rules):
        return [m for m, (d, t) in rules.items() if m not in c or c[m] < b[m] - t]

    for wrong in (strict, ignores_missing, one_direction):
        assert not gate(wrong), wrong.__name__

    def one_sided(a, b):
        nb, nc = ops.discordant(a, b)
        return 1.0 if nb + nc == 0 else binomtest(nb, nb + nc, 0.5, alternative="greater").pvalue

    def all_items(a, b):  # a binomial test over every item, not the discordant ones
        nb, _ = ops.discordant(a, b)
        return binomtest(nb, len(a), 0.5).pvalue

    def no_doubling(a, b):
        nb, nc = ops.discordant(a, b)
        return 1.0 if nb + nc == 0 else float(binom.cdf(min(nb, nc), nb + nc, 0.5))

    for wrong in (one_sided, all_items, no_doubling):
        assert not mcnemar(wrong), wrong.__name__

    def biased(X, Y, s):  # diagonals kept: the V-statistic
        from scipy.spatial.distance import cdist
        k = lambda A, B: np.exp(-cdist(A, B, "sqeuclidean") / (2 * s ** 2))  # noqa: E731
        return float(k(X, X).mean() + k(Y, Y).mean() - 2 * k(X, Y).mean())

    def wrong_bandwidth(X, Y, s):
        return ops.reference_mmd2(X, Y, s * math.sqrt(2))

    for wrong in (biased, wrong_bandwidth):
        assert not mmd(wrong), wrong.__name__


@pytest.mark.slow
def test_student_version_of_lab22_runs_end_to_end(run_student_version):
    """`labkit student build`'s version of lab 22 (every exercise `...`) runs to the end in strict mode: tracked
    runs, promotion, the A/B test, the gate as a pytest run, the server and its metrics, drift; nothing is left
    running (the server is stopped by the lab)."""
    report, text = run_student_version(LAB22.name)
    assert report.solutions >= 3, report
    assert "not answered yet" in text and "using the kit's own" in text
    assert "promote lora_lr3e3" in text and "blocked by the gate" in text
    assert "1 failed, 2 passed" in text and "3 passed" in text
    assert "p50 latency" in text and "DRIFT" in text and "server stopped" in text
