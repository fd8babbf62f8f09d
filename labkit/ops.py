"""Lab 22's engine: LLMOps on the zoo's reader models. Tracking, a registry and a promotion rule, a model card,
A/B tests, an evaluation gate run as a test, monitoring from Prometheus metrics, input drift, and cost.

    >>> from labkit import ops
    >>> store = ops.tracking_store(tmp)                       # MLflow on sqlite in a folder: runs, registry, prompts
    >>> items = ops.qa_items("in-world", 100)                 # reading items: the world's, or built apart from it
    >>> ok = ops.correct("tiny-chat", items)                  # exact match per item (the zoo's scorer)
    >>> ops.reference_mcnemar(ok_a, ok_b).p_value             # paired test on the same items
    >>> ops.drift_test(ref, window, ops.reference_mmd2)       # MMD² and its permutation threshold

What is here and where it comes from:

- **items and scoring**: the world's context-QA test split (``labkit.zoo.corpus``) is *in-world*; passages from
  ``labkit.zoo.reading``'s held-out generator (faker names of locales, relations, phrasings and words never
  trained on) are *out-of-world*. Replies come from ``labkit.zoo.evaluate.run_chat`` (greedy, batched) and are
  scored by SQuAD-normalised exact match (``labkit.zoo.reading.exact_match``), as ``labkit zoo eval`` scores;
  held-out loss is ``labkit.finetune.heldout_loss`` (mean loss on the answer tokens).
- **tests**: McNemar's exact test through ``scipy.stats.binomtest`` on the discordant pairs; a paired bootstrap
  through ``labkit.evaluation.arena.paired_bootstrap`` (lab 11); Wilson intervals through scipy.
- **drift**: MMD² (unbiased, RBF kernel) computed with ``scipy.spatial.distance.cdist``; the threshold is the
  (1 - alpha) quantile of the statistic under random relabelling of the pooled samples (a permutation test).
- **tracking**: MLflow's client API on a sqlite store (``tracking_store``); ``labkit.finetune.tracking`` logs runs.
- **monitoring**: requests to the kit's OpenAI-compatible server (``labkit.serve``), its ``/metrics`` parsed by
  ``prometheus_client.parser``; quantiles from histogram buckets as Prometheus' ``histogram_quantile`` computes.

The reference functions (``reference_*``) are what the lab's exercises are checked against; the lab runs on the
learner's own versions. Plain results; numpy, scipy, torch, mlflow and pytest are imported inside the functions.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import LabkitError, LabkitUsageError


# ------------------------------------------------------------------------------------------------ tracking store
@dataclass
class TrackingStore:
    """An MLflow tracking store and model registry in one sqlite file, artifacts beside it."""

    folder: Path
    uri: str
    experiment: str
    experiment_id: str
    artifact_root: str

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)


def tracking_store(folder: str | os.PathLike, experiment: str = "lab22") -> TrackingStore:
    """MLflow on ``folder/mlflow.db`` (runs, the model registry and the prompt registry) with its artifacts in
    ``folder/artifacts``; set as MLflow's current tracking and registry URI, ``experiment`` created and made
    current. Telemetry and progress bars off: nothing leaves the machine or lands in the home folder."""
    from .finetune.tracking import quiet_mlflow

    quiet_mlflow()
    import mlflow

    quiet_mlflow()  # again: importing mlflow set its own logger's level
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    artifacts = (folder / "artifacts").as_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment, artifact_location=artifacts)
    mlflow.set_experiment(experiment_id=exp_id)
    return TrackingStore(folder, uri, experiment, exp_id, artifacts)


# ------------------------------------------------------------------------------------------------ items, scoring
KINDS = ("in-world", "out-of-world", "reading")


def qa_items(kind: str = "in-world", n: int = 100, seed: int = 0, max_sentences: int | None = 3,
             stream: str = "lab22") -> list[dict]:
    """``n`` context-QA items ({"context", "question", "answer"}): ``in-world`` from the zoo world's held-out test
    split (the people and towns tiny-chat was trained on); ``out-of-world`` from ``labkit.zoo.reading``'s held-out
    generator (names of locales, relations, phrasings and words no zoo model was trained on); ``reading`` from
    the same generator's training side (what tiny-chat-v2 was fine-tuned on; fresh items). ``max_sentences``
    keeps passages short (faster, and within what a 4-layer model can read); None keeps all."""
    if kind not in KINDS:
        raise LabkitUsageError(f"`kind` must be one of {', '.join(KINDS)}, not {kind!r}")
    if not isinstance(n, int) or n < 1:
        raise LabkitUsageError(f"`n` must be a positive whole number, not {n!r}")
    if kind == "in-world":
        from .zoo.corpus import Corpus

        pool = Corpus(seed=seed).context_qa("test", n * 3 if max_sentences else n, stream=stream)
        pool = [{**it, "sentences": it["context"].count(". ") + 1} for it in pool]
    else:
        from .zoo.reading import Reading

        pool = Reading(seed, heldout=kind == "out-of-world").context_qa(n * 6 if max_sentences else n, stream=stream)
    items = [it for it in pool if max_sentences is None or it["sentences"] <= max_sentences][:n]
    if len(items) < n:
        raise LabkitError(f"only {len(items)} {kind} items with at most {max_sentences} sentences; ask for fewer")
    return [{"context": it["context"], "question": it["question"], "answer": it["answer"], "kind": kind}
            for it in items]


def qa_prompt(context: str, question: str) -> str:
    """The zoo's context-QA user message (``labkit.zoo.formats.context_qa_messages``): what the readers were
    trained on."""
    from .zoo.formats import context_qa_messages

    return context_qa_messages(context, question)[0]["content"]


def qa_chats(items: Sequence[dict]) -> list[dict]:
    """Chat rows ({"messages": [user, assistant]}) for fine-tuning or held-out loss: the answer is the reply."""
    return [{"messages": [{"role": "user", "content": qa_prompt(it["context"], it["question"])},
                          {"role": "assistant", "content": it["answer"]}]} for it in items]


def _loaded(model):
    from .models import resolve

    if isinstance(model, os.PathLike):
        model = str(model)
    return resolve(model, kinds=("causal-lm",), use="evaluation")


def answers(model, items: Sequence[dict], prompt: Callable[..., str] | Any = None, max_new_tokens: int = 16) -> list[str]:
    """Greedy replies of ``model`` (a zoo name, a run, a folder or a loaded model) to the items. ``prompt``: how
    an item becomes the user message: a function ``(context, question) -> str`` or anything with
    ``.format(context=..., question=...)`` (an MLflow prompt version); default the zoo's own format."""
    from .zoo.evaluate import run_chat

    lm = _loaded(model)
    if prompt is None:
        render = qa_prompt
    elif callable(getattr(prompt, "format", None)) and not callable(prompt):
        render = lambda c, q: prompt.format(context=c, question=q)  # noqa: E731
    elif callable(prompt):
        render = prompt
    else:
        raise LabkitUsageError("`prompt` must be a function (context, question) -> text or have .format(...)")
    convs = [[{"role": "user", "content": render(it["context"], it["question"])}] for it in items]
    outs = run_chat(lm.model, lm.tokenizer, convs, max_tool_calls=0, max_new_tokens=max_new_tokens)
    return [o["reply"] for o in outs]


def correct(model, items: Sequence[dict], prompt=None) -> list[bool]:
    """Exact match (SQuAD normalisation) of each reply with its item's answer."""
    from .zoo.reading import exact_match

    return [bool(exact_match(a, it["answer"])) for a, it in zip(answers(model, items, prompt), items)]


def heldout_loss(model, items_or_rows: Sequence[dict]) -> float:
    """Mean loss per answer token (nats) on context-QA items or chat rows."""
    from .finetune.engine import heldout_loss as _loss

    rows = list(items_or_rows)
    if rows and "messages" not in rows[0]:
        rows = qa_chats(rows)
    lm = _loaded(model)
    return float(_loss(lm.model, lm.tokenizer, rows))


def reader_metrics(model, sets: dict[str, Sequence[dict]], loss_sets: dict[str, Sequence[dict]] | None = None) -> dict:
    """``{name}_em`` for each item set and ``{name}`` (held-out loss) for each loss set: the figures the lab's
    promotion rule, model card and gate read. ``sets`` = {"in_world": items, ...}."""
    lm = _loaded(model)  # loaded once for every set
    out = {}
    for name, items in (loss_sets or {}).items():
        out[name] = heldout_loss(lm, items)
    for name, items in sets.items():
        ok = correct(lm, items)
        out[f"{name}_em"] = sum(ok) / len(ok)
    return out


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (scipy)."""
    from scipy.stats import binomtest

    if n == 0:
        return (0.0, 1.0)
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


# ------------------------------------------------------------------------------------------------ paired tests
@dataclass
class McNemar:
    """McNemar's exact test on paired right/wrong outcomes: ``b`` items only A got right, ``c`` only B."""

    b: int
    c: int
    p_value: float

    @property
    def discordant(self) -> int:
        return self.b + self.c


def discordant(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[int, int]:
    if len(correct_a) != len(correct_b):
        raise LabkitUsageError(f"`correct_a` and `correct_b` must score the same items: {len(correct_a)} vs "
                               f"{len(correct_b)} outcomes")
    b = sum(1 for x, y in zip(correct_a, correct_b) if x and not y)
    c = sum(1 for x, y in zip(correct_a, correct_b) if y and not x)
    return b, c


def reference_mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> McNemar:
    """Two-sided exact McNemar test: under "A and B are equally good", each discordant item is a fair coin, so
    b ~ Binomial(b + c, 1/2); the p-value is scipy's two-sided binomial test. No discordant pair: p = 1."""
    from scipy.stats import binomtest

    b, c = discordant(correct_a, correct_b)
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return McNemar(b, c, p)


@dataclass
class ABResult:
    """One A/B comparison of two models on the same items."""

    name_a: str
    name_b: str
    n: int
    acc_a: float
    acc_b: float
    b: int  # only A right
    c: int  # only B right
    p_value: float
    diff_ci: tuple[float, float]  # paired bootstrap interval of acc_b - acc_a

    def summary(self, label: str = "") -> str:
        head = f"{label}: " if label else ""
        return (f"{head}{self.name_a} {self.acc_a:.0%} vs {self.name_b} {self.acc_b:.0%} on the same {self.n} items; "
                f"only {self.name_a} right on {self.b}, only {self.name_b} on {self.c}; McNemar p = {self.p_value:.3g}; "
                f"difference {self.acc_b - self.acc_a:+.0%} (95% paired bootstrap {self.diff_ci[0]:+.0%} to "
                f"{self.diff_ci[1]:+.0%})")


def ab_test(correct_a: Sequence[bool], correct_b: Sequence[bool], name_a: str = "A", name_b: str = "B",
            test: Callable = None, seed: int = 0) -> ABResult:
    """Accuracies, discordant counts, the paired test's p-value (``test(correct_a, correct_b)`` -> a p-value or an
    object with ``.p_value``; default ``reference_mcnemar``) and a paired bootstrap interval of the difference."""
    from .evaluation.arena import paired_bootstrap

    b, c = discordant(correct_a, correct_b)
    res = (test or reference_mcnemar)(list(correct_a), list(correct_b))
    p = float(getattr(res, "p_value", res))
    n = len(correct_a)
    d, lo, hi = paired_bootstrap([bool(x) for x in correct_b], [bool(x) for x in correct_a], rounds=2000, seed=seed)
    return ABResult(name_a, name_b, n, sum(map(bool, correct_a)) / n, sum(map(bool, correct_b)) / n, b, c, p, (lo, hi))


# ------------------------------------------------------------------------------------------------ the gate
def _check_rules(rules: dict) -> None:
    for metric, rule in rules.items():
        if not (isinstance(rule, (list, tuple)) and len(rule) == 2 and rule[0] in ("higher", "lower")
                and isinstance(rule[1], (int, float)) and rule[1] >= 0):
            raise LabkitUsageError(f"`rules`[{metric!r}] must be (\"higher\" or \"lower\", tolerance >= 0), not {rule!r}")


def reference_gate(candidate: dict, baseline: dict, rules: dict) -> list[str]:
    """The metrics on which ``candidate`` regresses against ``baseline``, in the order of ``rules``. A rule is
    ``(direction, tolerance)``: for ``"higher"`` (higher is better) a regression is candidate < baseline -
    tolerance; for ``"lower"``, candidate > baseline + tolerance. A metric the candidate lacks is a regression."""
    _check_rules(rules)
    failed = []
    for metric, (direction, tol) in rules.items():
        if metric not in candidate or candidate[metric] is None:
            failed.append(metric)
            continue
        got, base = float(candidate[metric]), float(baseline[metric])
        if got != got or (direction == "higher" and got < base - tol) or (direction == "lower" and got > base + tol):
            failed.append(metric)
    return failed


@dataclass
class Decision:
    """What the promotion rule decided, and why, candidate by candidate."""

    promoted: str | None
    reasons: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"  {name}: {why}" for name, why in self.reasons.items()]
        head = f"promote {self.promoted}" if self.promoted else "keep the champion"
        return head + "\n" + "\n".join(lines)


def choose_champion(candidates: dict[str, dict], champion: dict, rules: dict, gate: Callable = None,
                    primary: str = "heldout_loss", lower_is_better: bool = True, min_gain: float = 0.0) -> Decision:
    """The promotion rule: among the candidates that pass ``gate(candidate, champion, rules)`` (no regression on
    any gated metric), the one best on ``primary``; it is promoted only if it beats the champion's ``primary`` by
    more than ``min_gain``. Candidates: name -> metrics."""
    gate = gate or reference_gate
    sign = 1 if lower_is_better else -1
    reasons, passing = {}, []
    for name, m in candidates.items():
        failed = list(gate(m, champion, rules))
        if failed:
            reasons[name] = "blocked by the gate: " + ", ".join(
                f"{k} {m.get(k, float('nan')):.3f} vs champion {champion[k]:.3f}" for k in failed)
        else:
            passing.append(name)
    best = min(passing, key=lambda n: sign * candidates[n][primary]) if passing else None
    for name in passing:
        gain = sign * (champion[primary] - candidates[name][primary])
        if name != best:
            reasons[name] = f"passes the gate, but {primary} {candidates[name][primary]:.3f} is not the best"
        elif gain > min_gain:
            reasons[name] = (f"passes the gate and has the best {primary}, {candidates[name][primary]:.3f}: "
                             f"{gain:.3f} better than the champion's {champion[primary]:.3f} (needed > {min_gain:g})")
        else:
            reasons[name] = (f"best {primary} {candidates[name][primary]:.3f}, but not better than the champion's "
                             f"{champion[primary]:.3f} by more than {min_gain:g}")
            best = None
    return Decision(best, {n: reasons[n] for n in candidates})


GATE_TEST = '''\
"""Evaluation gate for a reader model, written by labkit lab 22: a candidate ships only if no gated metric regresses
against the registered champion's. Run it as CI would: python -m pytest {name}
(the candidate, the champion's figures, the rules and the items are in gate.json beside this file)."""
import json
import pathlib

import pytest

from labkit import ops

SPEC_FILE = pathlib.Path(__file__).parent / "gate.json"
RULES = json.loads(SPEC_FILE.read_text())["rules"]


@pytest.fixture(scope="module")
def spec():
    return json.loads(SPEC_FILE.read_text())


@pytest.fixture(scope="module")
def measured(spec):
    sets = {{k: v for k, v in spec["items"].items() if k + "_em" in spec["rules"]}}
    losses = {{k: v for k, v in spec["items"].items() if k in spec["rules"]}}
    return ops.reader_metrics(spec["candidate"], sets, losses)


@pytest.mark.parametrize("metric", sorted(RULES))
def test_no_regression(spec, measured, metric):
    rule = {{metric: tuple(spec["rules"][metric])}}
    assert not ops.reference_gate(measured, spec["baseline"], rule), (
        f"{{metric}} regressed: {{measured.get(metric):.3f}} vs the champion's {{spec['baseline'][metric]:.3f}} "
        f"(rule {{spec['rules'][metric]}})")
'''


def write_gate_test(folder: str | os.PathLike, baseline: dict, rules: dict, items: dict[str, list],
                    name: str = "test_reader_gate.py") -> Path:
    """Write a pytest file (and ``gate.json``: baseline, rules, items) into ``folder``: one test per gated metric.
    ``items``: set name -> items (an ``X_em`` rule measures exact match on set X; a rule named X, the loss)."""
    _check_rules(rules)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(GATE_TEST.format(name=name))
    (folder / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (folder / "gate.json").write_text(json.dumps({"candidate": None, "baseline": baseline, "rules": rules,
                                                  "items": items}, indent=1))
    return path


@dataclass
class GateRun:
    candidate: str
    exit_code: int
    seconds: float

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


def run_gate(test_file: str | os.PathLike, candidate: str | os.PathLike, quiet: bool = False) -> GateRun:
    """Run the gate's test file on ``candidate`` (a model folder or zoo name) with pytest, in this process (the
    libraries are loaded once), plugins not auto-loaded (as a lean CI job would). Exit code 0: the gate passes."""
    import pytest

    test_file = Path(test_file)
    spec_file = test_file.parent / "gate.json"
    spec = json.loads(spec_file.read_text())
    spec["candidate"] = str(candidate)
    spec_file.write_text(json.dumps(spec, indent=1))
    env = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PY_COLORS": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import sys

    for key, mod in list(sys.modules.items()):  # a second run reads the file again, not the first run's module
        if getattr(mod, "__file__", None) and Path(mod.__file__).resolve() == test_file.resolve():
            del sys.modules[key]
    t0 = time.perf_counter()
    try:
        code = pytest.main([str(test_file), "-q" if quiet else "-v", "--tb=line", "--assert=plain", "-p",
                            "no:cacheprovider", "--color=no", "--import-mode=importlib", "--rootdir",
                            str(test_file.parent), "-W", "ignore"])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return GateRun(str(candidate), int(code), time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------ model card
def model_card(*, name: str, version: int | str, base: str, params: dict, metrics: dict, evaluation: dict,
               previous: dict | None, data: str, rule: str, run_id: str, sizes: dict, notes: Sequence[str] = ()) -> str:
    """A model card in markdown from what a run logged (``params``, ``metrics``) and what was measured on it
    (``evaluation``: metric -> value; ``previous``: the champion it replaces); ``sizes``: metric -> items."""
    def fmt(k, v):
        if v is None:
            return "-"
        return f"{v:.1%}" if k.endswith("_em") else f"{v:.3f}"

    rows = [f"| {k} | {fmt(k, v)} | {fmt(k, (previous or {}).get(k))} | {sizes.get(k, '-')} |"
            for k, v in evaluation.items()]
    trainable, total = int(float(metrics.get("trainable_params", 0))), int(float(metrics.get("total_params", 0)))
    lines = [
        f"# Model card: {name} v{version}", "",
        f"**What it is.** A LoRA fine-tune (rank {params.get('rank')}, alpha {params.get('alpha')}, learning rate "
        f"{params.get('lr')}, {params.get('max_steps')} steps of {params.get('batch')} chats, seed {params.get('seed')}) of "
        f"`{base}`, a {total - trainable:,}-parameter Llama-architecture chat model; {trainable:,} adapter "
        f"parameters trained (merged into the weights), in {float(metrics.get('seconds', 0)):.1f} s on this machine's "
        f"CPU. MLflow run `{run_id}`.", "",
        "**Intended use.** Teaching: a lab's example of a registered, promoted model. It answers a question about a "
        "short passage by copying a span of it (`Context: ...\\nQuestion: ...`, the zoo chat format). Not for any "
        "real use.", "",
        f"**Training data.** {data}", "",
        "**Evaluation, measured in this run** (greedy decoding; exact match with SQuAD normalisation; loss in nats "
        "per answer token):", "",
        "| metric | this model | previous champion | items |", "|---|---|---|---|", *rows, "",
        f"**Why it was promoted.** {rule}", "",
        "**Limitations.**", "",
        *[f"- {n}" for n in notes], "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ monitoring
@dataclass
class Request:
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    ttft_s: float | None = None
    status: int = 200
    stream: bool = False
    text: str = ""


@dataclass
class Traffic:
    requests: list[Request]
    seconds: float  # wall time of the whole batch

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.requests)

    @property
    def prompt_tokens(self) -> int:
        return sum(r.prompt_tokens for r in self.requests)

    @property
    def completion_tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return (self.prompt_tokens + self.completion_tokens) / self.seconds if self.seconds > 0 else 0.0

    def latencies(self) -> list[float]:
        return [r.latency_s for r in self.requests if r.status == 200]


def _post(url: str, body: dict, timeout: float) -> Request:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if not body.get("stream"):
                out = json.loads(resp.read())
                u = out.get("usage") or {}
                return Request(u.get("prompt_tokens", 0), u.get("completion_tokens", 0), time.perf_counter() - t0,
                               text=out["choices"][0]["message"].get("content") or "")
            ttft, usage, text = None, {}, []
            for raw in resp:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
                if delta.get("content"):
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    text.append(delta["content"])
                usage = chunk.get("usage") or usage
            return Request(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), time.perf_counter() - t0,
                           ttft, stream=True, text="".join(text))
    except urllib.error.HTTPError as exc:
        return Request(0, 0, time.perf_counter() - t0, status=exc.code)


def send_traffic(url: str, prompts: Sequence[str], max_tokens: int = 24, concurrency: int = 2,
                 stream_every: int = 3, timeout: float = 60.0) -> Traffic:
    """POST each prompt to ``url``'s ``/chat/completions`` (an OpenAI-compatible base URL on 127.0.0.1), from
    ``concurrency`` client threads; every ``stream_every``-th request streams (its time to first token is
    measured). Returns each request's latency and token counts, and the batch's wall time."""
    from concurrent.futures import ThreadPoolExecutor

    if not url.startswith(("http://127.0.0.1", "http://localhost")):
        raise LabkitUsageError(f"`url` must be a server on this machine (http://127.0.0.1:...), not {url!r}")
    if not 1 <= concurrency <= 8:
        raise LabkitUsageError("`concurrency` must be from 1 to 8")
    bodies = [{"model": "lab", "messages": [{"role": "user", "content": p}], "max_tokens": max_tokens,
               "temperature": 0, "stream": bool(stream_every) and i % stream_every == stream_every - 1}
              for i, p in enumerate(prompts)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        reqs = list(pool.map(lambda b: _post(url, b, timeout), bodies))
    return Traffic(reqs, time.perf_counter() - t0)


def scrape(root: str) -> list:
    """``GET {root}/metrics`` parsed into metric families (``prometheus_client.parser``)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(root.rstrip("/") + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return list(text_string_to_metric_families(text))


@dataclass
class Histogram:
    bounds: list[float]  # the buckets' upper bounds ("le"), +inf last
    cumulative: list[float]  # observations <= each bound
    count: float
    sum: float

    def quantile(self, q: float) -> float:
        return histogram_quantile(q, self.bounds, self.cumulative)


def histogram(families: list, name: str, **labels) -> Histogram:
    """The histogram ``name`` (with these label values) out of scraped families."""
    fam = next((f for f in families if f.name == name), None)
    if fam is None:
        raise LabkitUsageError(f"no metric {name!r} in the scrape; there are: {', '.join(f.name for f in families)}")
    bucket, total, count = {}, 0.0, 0.0
    for s in fam.samples:
        if any(s.labels.get(k) != v for k, v in labels.items()):
            continue
        if s.name.endswith("_bucket"):
            bucket[float(s.labels["le"])] = s.value
        elif s.name.endswith("_sum"):
            total = s.value
        elif s.name.endswith("_count"):
            count = s.value
    bounds = sorted(bucket)
    return Histogram(bounds, [bucket[b] for b in bounds], count, total)


def counter(families: list, name: str, **labels) -> float:
    """The value of a counter (summed over the label values not given)."""
    fam = next((f for f in families if f.name == name or f.name + "_total" == name), None)
    if fam is None:
        raise LabkitUsageError(f"no metric {name!r} in the scrape")
    return sum(s.value for s in fam.samples if s.name.endswith("_total")
               and all(s.labels.get(k) == v for k, v in labels.items()))


def histogram_quantile(q: float, bounds: Sequence[float], cumulative: Sequence[float]) -> float:
    """Prometheus' ``histogram_quantile``: find the bucket holding rank q x count and interpolate linearly inside
    it (from the previous bucket's bound, or 0); in the +Inf bucket, the last finite bound."""
    if not 0 <= q <= 1:
        raise LabkitUsageError(f"`q` must be from 0 to 1, not {q}")
    total = cumulative[-1] if cumulative else 0
    if total == 0:
        return float("nan")
    rank = q * total
    prev_b, prev_c = 0.0, 0.0
    for b, c in zip(bounds, cumulative):
        if c >= rank:
            if math.isinf(b):
                return prev_b
            if c == prev_c:
                return b
            return prev_b + (b - prev_b) * (rank - prev_c) / (c - prev_c)
        prev_b, prev_c = b, c
    return prev_b


def cost_per_1k(tokens_per_s: float, price_per_hour: float) -> float:
    """Dollars per 1,000 tokens for a machine billed ``price_per_hour`` that processes ``tokens_per_s``, kept busy."""
    if tokens_per_s <= 0:
        raise LabkitUsageError("`tokens_per_s` must be above 0")
    return price_per_hour / (tokens_per_s * 3600) * 1000


class Background:
    """Run ``fn()`` in a thread (e.g. a server that takes seconds to load) while the notebook goes on;
    ``result()`` waits for it and re-raises its error."""

    def __init__(self, fn: Callable[[], Any]):
        self._value, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn):
        try:
            self._value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller in result()
            self._error = exc

    def result(self, timeout: float | None = None):
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise LabkitError(f"still running after {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value


def serve_in_background(model: str, **kwargs) -> Background:
    """``labkit.serve.start(model, **kwargs)`` in a thread (the server loads for several seconds while other cells
    run); ``.result()`` is the running ``Server``. The server is also stopped when this Python process exits, so a
    lab that stops half-way does not leave it behind."""
    import atexit

    from . import serve

    job = Background(lambda: serve.start(model, **kwargs))

    def _stop():
        try:
            job.result(120).stop()
        except BaseException:  # noqa: BLE001 - it never started, or is stopped already
            pass

    atexit.register(_stop)
    return job


# ------------------------------------------------------------------------------------------------ drift
def embed(texts: Sequence[str], batch_size: int = 64):
    """MiniLM sentence embeddings (all-MiniLM-L6-v2, unit length) as a float64 numpy array."""
    import numpy as np
    from transformers.utils import logging as hf_logging

    from .models import sentence_embedder

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the notebook
    try:
        model = sentence_embedder()
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    vecs = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False)
    return np.asarray(vecs, dtype=np.float64)


def median_bandwidth(X) -> float:
    """The median heuristic: the median distance between distinct points of X (a common RBF bandwidth)."""
    import numpy as np
    from scipy.spatial.distance import pdist

    d = pdist(np.asarray(X, dtype=np.float64))
    return float(np.median(d[d > 0])) if (d > 0).any() else 1.0


def reference_mmd2(X, Y, sigma: float) -> float:
    """Unbiased MMD² between samples X (n, d) and Y (m, d) with the RBF kernel k(x, y) = exp(-|x - y|² / (2 σ²)):
    the mean of k within X and within Y (diagonals left out) minus twice the mean of k across."""
    import numpy as np
    from scipy.spatial.distance import cdist

    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    k = lambda A, B: np.exp(-cdist(A, B, "sqeuclidean") / (2 * sigma ** 2))  # noqa: E731
    n, m = len(X), len(Y)
    kxx, kyy, kxy = k(X, X), k(Y, Y), k(X, Y)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


@dataclass
class DriftResult:
    statistic: float
    threshold: float  # the (1 - alpha) quantile of the statistic under permutation
    p_value: float
    alpha: float
    null: list[float] = field(repr=False)

    @property
    def fired(self) -> bool:
        return self.statistic > self.threshold


def drift_test(reference, window, statistic: Callable = None, sigma: float | None = None, permutations: int = 200,
               alpha: float = 0.05, seed: int = 0) -> DriftResult:
    """Does ``window`` come from the distribution of ``reference``? ``statistic(X, Y, sigma)`` (default
    ``reference_mmd2``) on the two samples, against its distribution when the pooled samples are shuffled and
    split again (what it looks like with no drift). Fires when the statistic exceeds the (1 - alpha) quantile:
    a false alarm rate of alpha on traffic that did not change. ``sigma``: default the median heuristic on the
    reference."""
    import numpy as np

    if not 0 < alpha < 1:
        raise LabkitUsageError(f"`alpha` must be between 0 and 1, not {alpha}")
    if permutations < 20:
        raise LabkitUsageError("`permutations` must be at least 20")
    stat = statistic or reference_mmd2
    X, Y = np.asarray(reference, dtype=np.float64), np.asarray(window, dtype=np.float64)
    sigma = sigma or median_bandwidth(X)
    observed = float(stat(X, Y, sigma))
    pooled, n = np.concatenate([X, Y]), len(X)
    rng = np.random.default_rng(seed)
    null = []
    for _ in range(permutations):
        idx = rng.permutation(len(pooled))
        null.append(float(stat(pooled[idx[:n]], pooled[idx[n:]], sigma)))
    threshold = float(np.quantile(null, 1 - alpha))
    p = (1 + sum(v >= observed for v in null)) / (1 + permutations)
    return DriftResult(observed, threshold, p, alpha, null)
