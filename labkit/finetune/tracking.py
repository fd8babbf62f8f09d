"""Experiment tracking for fine-tuning runs: an MLflow callback that ``finetune`` accepts (``callbacks=[...]``).

    >>> from labkit.finetune import finetune
    >>> from labkit.finetune.tracking import MlflowTracking
    >>> r = finetune("tiny-chat", rows, "lora", steps=12, callbacks=[MlflowTracking("lab22")])
    >>> r.tracking["run_id"]                    # the MLflow run: params, metrics per step, artifacts

``%%finetune --track EXPERIMENT`` does the same from the magic. The tracking server is MLflow's current one
(``mlflow.set_tracking_uri(...)`` or ``MLFLOW_TRACKING_URI``; ``tracking_uri=`` sets it for this run only).

What a run logs:

- **params**: the run's settings as ``run.json`` records them (method, base model, LoRA rank and alpha, learning
  rate, steps, batch, seed, maximum length, the data's summary and row count);
- **metrics per step**: what the trainer logs (loss, learning rate, gradient norm, tokens seen, and trl's mean
  token accuracy);
- **summary metrics**: final loss, seconds, tokens/s, trainable parameters, peak memory (MiB);
- **artifacts**: ``run.json``, ``data.jsonl``, ``README.md`` (the run's card), ``adapter/`` for LoRA runs, and the
  merged ``model/`` with ``log_model=True``.

transformers ships its own ``MLflowCallback`` (``report_to="mlflow"``): it logs every ``TrainingArguments`` field
(over a hundred), is configured through environment variables, and knows nothing of a labkit run (its base model,
data, card and saved folders). This one is small, uses MLflow's client API (no global "active run" left behind
when a run fails) and logs what the run's card says. mlflow is imported when a run starts, not before.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..errors import LabkitUsageError

#: keys of the trainer's logs that become step metrics (the others, e.g. epoch, are left out)
STEP_KEYS = ("loss", "learning_rate", "grad_norm", "num_tokens", "mean_token_accuracy", "entropy", "reward",
             "rewards/margins", "accuracy")
#: keys of run.json that become params
PARAM_KEYS = ("method", "base", "name", "rank", "alpha", "targets", "lora", "steps", "epochs", "max_steps", "lr",
              "batch", "grad_accum", "max_length", "seed", "beta", "data", "data_format", "rows")


def quiet_mlflow() -> None:
    """No telemetry (which would write an id under the home folder and call out), no progress bars, no INFO lines
    about database migrations: set before mlflow is imported; a value the user set is kept."""
    import logging

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def default_artifacts(uri: str, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: beside a sqlite store (``<its folder>/artifacts/<experiment>``),
    not MLflow's default ``./mlruns`` under whatever the current folder is; other stores decide themselves."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):])
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in experiment)
    return (db.resolve().parent / "artifacts" / safe).as_uri()


def _metric_name(key: str) -> str:
    return key.replace("/", "_")  # "rewards/margins" would be a folder in a file store


class MlflowTracking(TrainerCallback):
    """Log one ``finetune`` run to MLflow. ``experiment``: its name (created when missing, with its artifacts under
    ``artifact_location`` when given); ``tracking_uri``: the store (default: MLflow's current one); ``run_name``:
    default the run's name; ``tags``: extra run tags; ``log_model``: also log the merged model folder (a few MB
    for a zoo model)."""

    def __init__(self, experiment: str = "labkit", *, tracking_uri: str | None = None, run_name: str | None = None,
                 tags: dict | None = None, log_model: bool = False, artifact_location: str | None = None):
        if not isinstance(experiment, str) or not experiment.strip():
            raise LabkitUsageError("`experiment` must be a non-empty name, like 'lab22'")
        self.experiment, self.tracking_uri, self.run_name = experiment.strip(), tracking_uri, run_name
        self.tags, self.log_model, self.artifact_location = dict(tags or {}), log_model, artifact_location
        self.client = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._pending: list = []

    # -- the engine's hooks (labkit.finetune.engine.finetune calls them around the trainer)
    def on_run_begin(self, config: dict) -> None:
        quiet_mlflow()
        import mlflow
        from mlflow import MlflowClient
        from mlflow.entities import Param

        uri = self.tracking_uri or mlflow.get_tracking_uri()
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri if self.tracking_uri else None)
        exp = self.client.get_experiment_by_name(self.experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(
            self.experiment, artifact_location=self.artifact_location or default_artifacts(uri, self.experiment))
        tags = {"labkit.method": str(config.get("method")), "labkit.base": str(config.get("base")), **self.tags}
        run = self.client.create_run(self.experiment_id, run_name=self.run_name or config.get("name"), tags=tags)
        self.run_id = run.info.run_id
        params = [Param(k, str(config[k])[:6000]) for k in PARAM_KEYS if config.get(k) is not None]
        self.client.log_batch(self.run_id, params=params)

    def on_run_end(self, result) -> None:
        if self.client is None or self.run_id is None:
            return
        summary = {"steps_done": result.step, "seconds": result.seconds, "tokens_per_s": result.tokens_per_s,
                   "trainable_params": result.trainable_params, "total_params": result.total_params,
                   "peak_memory_mib": result.peak_memory / 2**20}
        if result.losses:
            summary["final_loss"] = result.losses[-1]
        self._queue(summary, step=result.step)
        self._flush()
        folder = Path(result.path) if result.path else None
        if folder is not None:
            for name in ("run.json", "data.jsonl", "README.md"):
                if (folder / name).is_file():
                    self.client.log_artifact(self.run_id, str(folder / name))
            if (folder / "adapter").is_dir():
                self.client.log_artifacts(self.run_id, str(folder / "adapter"), "adapter")
            if self.log_model and (folder / "model").is_dir():
                self.client.log_artifacts(self.run_id, str(folder / "model"), "model")
            self.client.set_tag(self.run_id, "labkit.run_folder", str(folder))
        if result.stopped:
            self.client.set_tag(self.run_id, "labkit.stopped", result.stop_reason or "stopped early")
        self.client.set_terminated(self.run_id, "FINISHED")
        run = self.client.get_run(self.run_id)
        result.tracking = {"run_id": self.run_id, "experiment_id": self.experiment_id,
                           "experiment": self.experiment, "tracking_uri": self.client.tracking_uri,
                           "artifact_uri": run.info.artifact_uri}

    def on_run_error(self, exc: BaseException) -> None:
        if self.client is None or self.run_id is None:
            return
        try:
            self._flush()
            self.client.set_tag(self.run_id, "labkit.error", f"{type(exc).__name__}: {exc}"[:5000])
            self.client.set_terminated(self.run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        except Exception:  # noqa: BLE001 - a failing store must not hide the training error
            pass

    # -- the trainer's events
    def on_log(self, args, state, control, logs=None, **kw):
        if self.client is None or not logs or "train_runtime" in logs:
            return
        values = {}
        for key in STEP_KEYS:
            v = logs.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf"):
                values[_metric_name(key)] = float(v)
        self._queue(values, step=state.global_step)
        if len(self._pending) >= 200:
            self._flush()

    def on_train_end(self, args, state, control, **kw):
        self._flush()

    # -- batching: one database transaction per flush, not one per value
    def _queue(self, values: dict, step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), ts, int(step)) for k, v in values.items()]

    def _flush(self) -> None:
        if self.client is None or not self._pending:
            return
        batch, self._pending = self._pending, []
        for i in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=batch[i:i + 1000])


def check_callbacks(callbacks: Any) -> list:
    """``callbacks`` as a list: each a ``transformers.TrainerCallback`` (added to the trainer) and/or an object
    with the engine's hooks ``on_run_begin(config)``, ``on_run_end(result)``, ``on_run_error(exc)``."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        callbacks = [callbacks]
    for cb in callbacks:
        if not (isinstance(cb, TrainerCallback) or any(hasattr(cb, h) for h in ("on_run_begin", "on_run_end"))):
            raise LabkitUsageError(f"`callbacks`: {type(cb).__name__} is neither a transformers TrainerCallback nor "
                                   f"an object with on_run_begin/on_run_end (e.g. labkit.finetune.tracking."
                                   f"MlflowTracking)")
    return list(callbacks)
