"""The fine-tuning engine: one call = one run of a trl trainer, watched, checkpointed, saved and registered.

    >>> from labkit.finetune import finetune
    >>> r = finetune("tiny-chat", rows, method="lora", rank=8, steps=60, name="my_lora")
    >>> r.losses, r.tokens_per_s, r.trainable_params, r.path
    >>> labkit.models.load("my_lora")        # the merged model, for %%generate and the other magics

Methods and the trl trainer each one uses (their loops, not ours):

- ``full``  : ``SFTTrainer``, every weight trained;
- ``lora``  : ``SFTTrainer`` + a peft ``LoraConfig`` (low-rank adapters on ``targets``);
- ``qlora`` : the same on a base whose linear layers are 4-bit NF4 (bitsandbytes; CPU or CUDA);
- ``dpo``   : ``DPOTrainer`` on preference pairs (reference = a frozen copy, or the base under the adapter);
- ``grpo``  : ``GRPOTrainer`` with a rule-based reward (``labkit.finetune.rewards``);
- ``reward``: ``RewardTrainer``: a sequence-classification head that scores a reply (a reward model).
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LabkitError, LabkitUsageError
from ..runtime import check_memory, human_bytes
from ..viewable import Viewable
from ..watch import OnProgress, Progress, Reporter
from . import runs
from .callbacks import REWARD_KEYS, Curve, LiveCallback, StopSignal, interrupt_stops
from .config import DEFAULT_LR, METHODS, PEFT_METHODS, FinetuneConfig  # noqa: F401 (re-exported)
from .data import Dataset, load_data


#: curves of this session's runs, overlaid in the next run's view
SESSION_CURVES: list[Curve] = []


# ------------------------------------------------------------------------------------------------------- result
@dataclass
class FinetuneResult(Viewable):
    """One training run: what was trained, the curves and the measured figures, where it was saved."""

    name: str
    method: str
    base: str
    path: Path | None  # the run folder
    model: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    data: Dataset | None = field(repr=False)
    curve: Curve = field(repr=False)
    step: int = 0
    max_steps: int = 0
    stopped: bool = False
    stop_reason: str = ""
    seconds: float = 0.0
    tokens: float = 0.0
    peak_memory: int = 0
    trainable_params: int = 0
    total_params: int = 0
    checkpoint: Path | None = None
    log_history: list = field(default_factory=list, repr=False)
    config: dict = field(default_factory=dict, repr=False)
    resumed_from: int | None = None
    recovered: list[str] = field(default_factory=list)  # what an interrupted earlier run had left, put right
    tracking: dict = field(default_factory=dict)  # where a tracker logged the run (MLflow: run_id, experiment ...)

    @property
    def losses(self) -> list[float]:
        """The training loss at each logged step (this run and, after --resume, the steps before it)."""
        return [l for l in self.curve.loss if l is not None]

    @property
    def rewards(self) -> list[float]:
        """The reward curve: GRPO mean reward, DPO reward margin, reward-model pair accuracy."""
        return [r for r in self.curve.reward if r is not None]

    @property
    def steps(self) -> list[int]:
        return list(self.curve.steps)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_params / self.total_params if self.total_params else 0.0

    @property
    def model_path(self) -> Path | None:
        return self.path / "model" if self.path else None

    def generate(self, prompt: str | list[dict], max_new_tokens: int = 40, **kwargs) -> str:
        """Greedy reply of the trained model to a user message (or a message list), for a quick look."""
        return generate(self.model, self.tokenizer, prompt, max_new_tokens=max_new_tokens, **kwargs)

    def score(self, prompt, reply) -> float:
        """Reward-model score of ``reply`` to ``prompt`` (method ``reward`` only)."""
        if self.method != "reward":
            raise LabkitUsageError("score() needs a reward model: train one with method='reward'")
        return score(self.model, self.tokenizer, prompt, reply)

    def summary(self) -> str:
        state = "stopped early" if self.stopped else "done"
        s = (f"{self.name}: {self.method} on {self.base}, {self.step}/{self.max_steps} steps ({state}) in "
             f"{self.seconds:.1f} s, {self.tokens_per_s:,.0f} tokens/s, peak memory {human_bytes(self.peak_memory)}")
        if self.losses:
            s += f"\n  loss {self.losses[0]:.4f} -> {self.losses[-1]:.4f}"
        if self.rewards:
            s += f"; {self.curve.reward_label} {self.rewards[0]:.3f} -> {self.rewards[-1]:.3f}"
        s += (f"\n  trainable parameters {self.trainable_params:,} of {self.total_params:,} "
              f"({100 * self.trainable_fraction:.2f} %)")
        if self.data is not None:
            s += f"\n  data: {self.data.summary()}"
        if self.resumed_from is not None:
            s += f"\n  resumed from checkpoint-{self.resumed_from}"
        for note in self.recovered:
            s += f"\n  found from an interrupted run: {note}"
        if self.tracking.get("run_id"):
            s += f"\n  tracked in MLflow: run {self.tracking['run_id']} (experiment {self.tracking.get('experiment')})"
        if self.path:
            s += f"\n  saved in {self.path}" + (f" (last checkpoint {self.checkpoint.name})" if self.checkpoint else "")
        return s

    def __repr__(self):
        return self.summary()

    def _repr_html_(self):
        return self.html()


# ------------------------------------------------------------------------------------------------------ helpers
def linear_module_names(model) -> list[str]:
    """Names (last component) of the model's linear layers, which LoRA can target."""
    import torch

    names = set()
    for full, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) or type(mod).__name__ in ("Linear4bit", "Linear8bitLt"):
            names.add(full.rsplit(".", 1)[-1])
    return sorted(names)


def resolve_targets(model, targets) -> list[str] | str:
    """``None``/``'all-linear'`` -> every linear layer but the output head; a list -> checked against the model."""
    valid = [n for n in linear_module_names(model) if n not in ("lm_head", "score")]
    if targets in (None, "", "all-linear", "all"):
        return valid
    items = [t.strip() for t in (targets.split(",") if isinstance(targets, str) else targets) if str(t).strip()]
    unknown = [t for t in items if t not in valid]
    if unknown or not items:
        raise LabkitUsageError(f"unknown LoRA target module(s) {', '.join(unknown) or '(none given)'}: this model's "
                               f"linear layers are {', '.join(valid)} (or 'all-linear')")
    return items


def count_params(model) -> tuple[int, int]:
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if type(p).__name__ == "Params4bit":  # packed: two 4-bit weights per byte
            n *= 2
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def generate(model, tokenizer, prompt, max_new_tokens: int = 40, **kwargs) -> str:
    """Greedy reply to a user message (or a message list) through the tokenizer's chat template."""
    import torch

    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    device = next(model.parameters()).device
    ids = {k: v.to(device) for k, v in ids.items()}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, **kwargs)
    if was_training:
        model.train()
    text = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=False)
    for stop in ("<|end|>", "<|endoftext|>", tokenizer.eos_token or "\0"):
        text = text.split(stop, 1)[0]
    return text.strip()


def score(model, tokenizer, prompt, reply) -> float:
    import torch

    msgs = ([{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)) + \
           ([{"role": "assistant", "content": reply}] if isinstance(reply, str) else list(reply))
    ids = tokenizer.apply_chat_template(msgs, return_tensors="pt", return_dict=True)
    model.eval()
    with torch.no_grad():
        return float(model(**{k: v.to(next(model.parameters()).device) for k, v in ids.items()}).logits[0, 0])


class _Base:
    """The model to train and where it came from."""

    def __init__(self, model, tokenizer, path: Path | None, label: str):
        self.model, self.tokenizer, self.path, self.label = model, tokenizer, path, label
        self._tmp = None

    def ensure_path(self) -> Path:
        """A folder holding the base (qlora loads from files; an in-memory model is saved to a temp folder)."""
        if self.path is None:
            self._tmp = tempfile.mkdtemp(prefix="labkit-base-")
            self.model.save_pretrained(self._tmp)
            self.tokenizer.save_pretrained(self._tmp)
            self.path = Path(self._tmp)
        return self.path


def resolve_model(model, tokenizer=None, copy_model: bool = True) -> _Base:
    """A zoo name, a run name of this session, a folder, a ``LoadedModel`` or a transformers model -> a fresh copy.

    The registry's cached model is never trained in place (other cells use it): training works on a copy.
    ``copy_model=False`` hands back the model itself, for callers that only read it (QLoRA trains a 4-bit model
    loaded from the files: a full-precision copy would only hold memory).
    """
    from .. import models

    dup = copy.deepcopy if copy_model else (lambda m: m)
    if isinstance(model, tuple) and len(model) == 2:  # (model, tokenizer), as labkit.finetune.toy.model returns
        return resolve_model(model[0], tokenizer or model[1], copy_model)
    # the model door knows every spec: zoo names, this session's and saved runs' names, folders, hub ids, objects
    loaded = models.resolve(model, tokenizer=tokenizer, kinds=("causal-lm",), use="fine-tuning")
    label = str(model) if isinstance(model, (str, os.PathLike)) else loaded.name
    return _Base(dup(loaded.model), loaded.tokenizer, loaded.path, label)


def _estimate_training_bytes(n_params: int, method: str) -> int:
    per = {"full": 16, "dpo": 20, "grpo": 20, "reward": 16, "lora": 5, "qlora": 2}.get(method, 16)
    return n_params * per + 200 * 1024**2


def _default_name(method: str, base: str) -> str:
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in Path(base).name)[:40] or "model"
    n = 1
    while (runs.runs_dir() / f"{stem}-{method}-{n}").exists() or f"{stem}-{method}-{n}" in runs.registered():
        n += 1
    return f"{stem}-{method}-{n}"


class _quiet:
    """No progress bars, warnings or info logs from datasets/transformers/peft/trl while a run goes on."""

    def __enter__(self):
        import datasets
        import transformers
        from transformers.utils import logging as hf_logging

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")
        self.ds_bars = datasets.utils.logging.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        self.hf_bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        self.verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        return self

    def __exit__(self, *exc):
        import datasets
        import transformers
        from transformers.utils import logging as hf_logging

        transformers.logging.set_verbosity(self.verbosity)
        if self.hf_bars:
            hf_logging.enable_progress_bar()
        if self.ds_bars:
            datasets.enable_progress_bars()
        self._w.__exit__(*exc)
        return False


# ------------------------------------------------------------------------------------------------------- engine
def finetune(model, data=None, method: str | None = None, *, config: FinetuneConfig | None = None, tokenizer=None,
             stop: StopSignal | None = None, on_progress: OnProgress | None = None, show: bool | None = None,
             callbacks: list | None = None, **settings) -> FinetuneResult:
    """Train ``model`` on ``data`` with ``method``; save, register under ``name`` and return a FinetuneResult.

    The settings come as a ``FinetuneConfig`` (``config=``), as keywords (``rank=8, steps=60, name="x"``, the
    names of FinetuneConfig's fields), or both (keywords over the config); they are checked before anything loads.

    ``data``: a list of records, a datasets.Dataset, a .jsonl/.json/.txt path or text (formats: see
    ``labkit.finetune.data``). ``steps`` or ``epochs`` (default 1 epoch). ``lr`` default depends on the method.
    ``lora=True`` trains DPO/GRPO/reward through LoRA adapters too. ``resume=True`` continues run ``name`` from its
    latest checkpoint (same arguments: the same losses as an uninterrupted run). ``stop``: a StopSignal to end
    the run from code (the view's Stop button and a kernel interrupt do the same). ``on_progress``: called with
    a ``labkit.watch.Progress`` (kind ``"train"``; ``item`` the live Curve, ``info`` loss, tokens/s, ETA, memory)
    as the run goes on: ``%%finetune`` passes its training view's callback, a script may pass
    ``labkit.watch.tqdm_progress()``. ``callbacks``: more ``transformers.TrainerCallback`` objects for the trainer;
    one that also has ``on_run_begin(config)`` / ``on_run_end(result)`` / ``on_run_error(exc)`` is called around the
    run as well (``labkit.finetune.tracking.MlflowTracking`` logs the run to MLflow so). The engine displays nothing itself: ``show=True`` is ignored (with a warning)
    and ``overlay`` is for the view that a caller builds (``labkit.widgets.training.LiveView``).
    """
    if show:
        warnings.warn("finetune(show=True) no longer displays a view (the engine draws nothing): pass "
                      "on_progress=labkit.widgets.training.LiveView(), or use %%finetune", DeprecationWarning,
                      stacklevel=2)
    if method is not None:
        settings["method"] = method
    cfg = FinetuneConfig.make(config, **settings)
    from .tracking import check_callbacks

    hooks = check_callbacks(callbacks)
    (method, name, rank, targets, dropout, steps, epochs, batch, grad_accum, max_length, seed, resume, skip_bad,
     data_format, merge, save_every, keep_checkpoints, beta, reward, num_generations, max_new_tokens, temperature,
     gradient_checkpointing, bf16, bits, output_dir, warmup_steps, scheduler) = (
        cfg.method, cfg.name, cfg.rank, cfg.targets, cfg.dropout, cfg.steps, cfg.epochs, cfg.batch, cfg.grad_accum,
        cfg.max_length, cfg.seed, cfg.resume, cfg.skip_bad, cfg.data_format, cfg.merge, cfg.save_every,
        cfg.keep_checkpoints, cfg.beta, cfg.reward, cfg.num_generations, cfg.max_new_tokens, cfg.temperature,
        cfg.gradient_checkpointing, cfg.bf16, cfg.bits, cfg.output_dir, cfg.warmup_steps, cfg.scheduler)
    use_peft, alpha, lr = cfg.use_peft, cfg.lora_alpha, cfg.learning_rate

    # -- where the run lives
    name = runs.check_name(name) if name else None
    base_label = str(model) if isinstance(model, (str, os.PathLike)) else getattr(model, "name", None) or "scratch"
    name = name or _default_name(method, base_label)
    folder = runs.run_dir(name, output_dir)
    try:  # what an interrupted earlier run left (an unfinished or half-swapped save) is put right first
        recovered = runs.clean_partial(folder) if folder.is_dir() else []
    except OSError:
        recovered = []
    previous_ckpt = runs.latest_checkpoint(folder) if resume else None
    saved_config = {}
    if resume:
        if not (folder / "run.json").is_file():
            raise LabkitUsageError(f"nothing to resume: there is no run {name!r} in {folder.parent} "
                                   f"(runs there: {', '.join(sorted(p.name for p in folder.parent.iterdir())) if folder.parent.is_dir() else 'none'})")
        saved_config = json.loads((folder / "run.json").read_text())
        if saved_config.get("method") != method:
            raise LabkitUsageError(f"run {name!r} was trained with `method` {saved_config.get('method')}, not {method}")
        if data is None and (folder / "data.jsonl").is_file():
            data = folder / "data.jsonl"
    runs.ensure_writable(folder)

    # -- data and model
    ds = load_data(data, method, skip_bad=skip_bad, fmt=data_format)
    base = resolve_model(model, tokenizer, copy_model=method != "qlora")  # qlora reads the base, never trains it
    tok = base.tokenizer
    if tok is None:
        raise LabkitUsageError(f"{base.label} has no tokenizer: pass tokenizer=...")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    n_params = sum(p.numel() for p in base.model.parameters())
    check_memory(_estimate_training_bytes(n_params, method if not use_peft else "lora"),
                 f"{method} training of {base.label} ({n_params / 1e6:.1f}M parameters)")

    from ..runtime import configure_torch

    configure_torch()
    import datasets
    import torch
    import transformers
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback

    transformers.set_seed(seed)
    cuda = torch.cuda.is_available()
    hf_ds = ds.to_hf()
    n_rows = len(hf_ds)
    per_step = batch * grad_accum
    if method == "grpo":
        per_step = batch * grad_accum // num_generations
    if steps is None:
        epochs = epochs or 1.0
        max_steps = max(1, math.ceil(n_rows * epochs / max(1, per_step)))
    else:
        max_steps = steps
    if save_every is None:
        save_every = max(1, max_steps // 4)

    config = dict(method=method, base=base.label, name=name, rank=rank, alpha=alpha, targets=targets, lora=use_peft,
                  steps=steps, epochs=epochs, max_steps=max_steps, lr=lr, batch=batch, grad_accum=grad_accum,
                  max_length=max_length, seed=seed, beta=beta, num_generations=num_generations,
                  max_new_tokens=max_new_tokens, temperature=temperature, bits=bits, data=ds.summary(),
                  data_format=ds.format, rows=n_rows, reward=[getattr(r, "__name__", str(r)) for r in
                                                             (reward if isinstance(reward, (list, tuple)) else [reward])])
    if resume and saved_config:
        for key in ("max_steps", "batch", "lr", "seed"):
            if saved_config.get(key) != config.get(key):
                raise LabkitUsageError(f"`resume` must repeat the run's settings: {key} was {saved_config.get(key)!r}, "
                                       f"now {config.get(key)!r}")
    runs.write_json_atomic(folder / "run.json", config)
    if not (resume and (folder / "data.jsonl").is_file()):
        with open(folder / "data.jsonl.tmp", "w") as fh:
            for row in ds.rows:
                fh.write(json.dumps(row) + "\n")
        os.replace(folder / "data.jsonl.tmp", folder / "data.jsonl")

    # -- the model to train
    peft_config = None
    train_model = base.model
    if method == "qlora":
        from .quant import load_quantized

        with _quiet():
            train_model = load_quantized(base.ensure_path(), bits)
    elif method == "reward":
        train_model = _reward_model(base.model, tok)
    if use_peft:
        from peft import LoraConfig

        tmods = resolve_targets(train_model, targets)
        peft_config = LoraConfig(r=int(rank), lora_alpha=float(alpha), lora_dropout=dropout, target_modules=tmods,
                                 task_type="SEQ_CLS" if method == "reward" else "CAUSAL_LM")
    elif targets not in (None, "", "all-linear", "all"):
        raise LabkitUsageError(f"`targets` only applies to LoRA (`method` lora/qlora, or `lora`); "
                               f"{method} trains every weight")

    common = dict(
        output_dir=str(folder / "checkpoints"), max_steps=max_steps, per_device_train_batch_size=batch,
        gradient_accumulation_steps=grad_accum, learning_rate=lr, logging_steps=1, report_to=[],
        save_strategy="steps" if save_every else "no", save_steps=save_every or 500, save_total_limit=None,
        seed=seed, data_seed=seed, disable_tqdm=True, use_cpu=not cuda, bf16=bf16,
        lr_scheduler_type=scheduler, warmup_steps=warmup_steps,
        dataloader_num_workers=0, save_only_model=False, log_level="error",
    )
    gc_key = "activation_checkpointing" if "activation_checkpointing" in _config_fields() else "gradient_checkpointing"
    common[gc_key] = bool(gradient_checkpointing)
    if gradient_checkpointing:
        common[gc_key + "_kwargs"] = {"use_reentrant": False}
    trainer_cls, trainer_kwargs = _trainer_for(method, common, train_model, tok, hf_ds, peft_config, max_length,
                                               beta, reward, num_generations, max_new_tokens, temperature, use_peft)

    # -- the live view
    curve = Curve(name, method, REWARD_KEYS.get(method, (None, ""))[1])
    if resume and previous_ckpt is not None:
        _restore_curve(curve, previous_ckpt)
    stop = stop or StopSignal()
    report = Reporter(on_progress)

    def on_update(curve_now: Curve, status: dict) -> None:
        report(Progress("train", done=int(status.get("step") or 0), total=status.get("max_steps") or max_steps,
                        state=status.get("state", "running"), message=status.get("message") or "",
                        item=curve_now, info=status))

    live = LiveCallback(curve, stop, on_update=on_update if report else None)

    _call_hooks(hooks, "on_run_begin", dict(config))
    try:
        t0 = time.perf_counter()
        with _quiet():
            try:
                trainer = runs.atomic_trainer(trainer_cls)(**trainer_kwargs)
                trainer._lk_keep = keep_checkpoints
                for cb in (PrinterCallback, ProgressCallback):
                    trainer.remove_callback(cb)
                trainer.add_callback(live)
                for cb in hooks:
                    if isinstance(cb, TrainerCallback):
                        trainer.add_callback(cb)
                with interrupt_stops(stop):
                    trainer.train(resume_from_checkpoint=str(previous_ckpt) if previous_ckpt else None)
            except KeyboardInterrupt:
                live.finish("stopped", "aborted by a second interrupt")
                last = runs.latest_checkpoint(folder)
                raise LabkitError(f"training of {name!r} aborted. "
                                  + (f"The last complete checkpoint is {last}; continue with `resume`." if last else
                                     "No checkpoint was written yet.")) from None
            except LabkitError:
                live.finish("error", "could not write a checkpoint")
                raise
            except (RuntimeError, ValueError, TypeError) as exc:
                live.finish("error", str(exc)[:200])
                raise LabkitError(f"training failed ({type(exc).__name__}: {exc})") from None
            seconds = time.perf_counter() - t0
            # -- save, register
            trained = trainer.model
            final = _save_final(folder, trained, tok, method, use_peft, base, merge)
        runs.register(name, folder / "model")
        trainable, total = count_params(trained)
        if method == "qlora":
            total = n_params
        result = FinetuneResult(
            name=name, method=method, base=base.label, path=folder, model=final, tokenizer=tok, data=ds, curve=curve,
            step=trainer.state.global_step, max_steps=max_steps, stopped=live.stopped_early, stop_reason=stop.reason,
            seconds=seconds, tokens=live.tokens, peak_memory=live.peak_memory, trainable_params=trainable,
            total_params=total, checkpoint=runs.latest_checkpoint(folder), log_history=list(trainer.state.log_history),
            config=config, resumed_from=int(previous_ckpt.name.split("-")[1]) if previous_ckpt else None,
            recovered=recovered)
        _write_card(folder, result)
    except BaseException as exc:  # the tracker marks its run failed, then the error goes on as before
        _call_hooks(hooks, "on_run_error", exc)
        raise
    _call_hooks(hooks, "on_run_end", result, quiet=True)
    SESSION_CURVES[:] = [c for c in SESSION_CURVES if c.name != name] + [curve]
    if base._tmp:
        shutil.rmtree(base._tmp, ignore_errors=True)
    return result


def _call_hooks(hooks: list, name: str, arg, quiet: bool = False) -> None:
    """Call ``name(arg)`` on each callback that has it. ``quiet``: a failing hook is a warning (the run is trained
    and saved already: a tracking store that cannot be written must not lose it)."""
    for cb in hooks:
        fn = getattr(cb, name, None)
        if fn is None:
            continue
        if not quiet:
            fn(arg)
            continue
        try:
            fn(arg)
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"{type(cb).__name__}.{name} failed ({type(exc).__name__}: {exc}); the run itself is saved",
                          RuntimeWarning, stacklevel=3)


def _config_fields() -> set:
    import dataclasses

    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments)}


def _reward_model(causal_lm, tok):
    """A sequence-classification model (one score) whose body is the causal LM's body; the head is new."""
    from transformers import AutoModelForSequenceClassification

    cfg = copy.deepcopy(causal_lm.config)
    cfg.num_labels = 1
    cfg.pad_token_id = tok.pad_token_id
    cfg.architectures = None
    rm = AutoModelForSequenceClassification.from_config(cfg)
    missing, _ = rm.load_state_dict(causal_lm.state_dict(), strict=False)
    if any(not k.startswith("score") for k in missing):
        raise LabkitError(f"could not copy the body of the model into a reward model (missing {missing[:3]})")
    return rm


def _trainer_for(method, common, model, tok, hf_ds, peft_config, max_length, beta, reward, num_generations,
                 max_new_tokens, temperature, use_peft):
    if method in ("full", "lora", "qlora"):
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(max_length=max_length, packing=False, dataset_num_proc=None, **common)
        return SFTTrainer, dict(model=model, args=args, train_dataset=hf_ds, processing_class=tok,
                                peft_config=peft_config)
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(beta=beta, max_length=max_length, dataset_num_proc=None, **common)
        ref = None if use_peft else copy.deepcopy(model).eval()
        return DPOTrainer, dict(model=model, ref_model=ref, args=args, train_dataset=hf_ds, processing_class=tok,
                                peft_config=peft_config)
    if method == "reward":
        from trl import RewardConfig, RewardTrainer

        args = RewardConfig(max_length=max_length, dataset_num_proc=None, **common)
        return RewardTrainer, dict(model=model, args=args, train_dataset=hf_ds, processing_class=tok,
                                   peft_config=peft_config)
    if method == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        from .rewards import get as get_rewards

        funcs = get_rewards(reward)
        if "answer" not in hf_ds.column_names and any(getattr(f, "__name__", "") in ("arithmetic", "exact") for f in funcs):
            raise LabkitUsageError("the arithmetic/exact rewards compare replies with an 'answer' column: give "
                                   "records like {\"prompt\": ..., \"answer\": ...}")
        args = GRPOConfig(num_generations=num_generations, max_completion_length=max_new_tokens,
                          temperature=temperature, beta=0.0, **common)
        return GRPOTrainer, dict(model=model, reward_funcs=funcs, args=args, train_dataset=hf_ds,
                                 processing_class=tok, peft_config=peft_config)
    raise LabkitUsageError(f"unknown method {method!r}")


def _restore_curve(curve: Curve, ckpt: Path) -> None:
    """The curve up to the checkpoint, from its trainer_state.json, so a resumed view shows the whole run."""
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return
    key = REWARD_KEYS.get(curve.method, (None,))[0]
    for log in state.get("log_history", []):
        if "loss" in log or (key and key in log):
            curve.steps.append(int(log.get("step", len(curve.steps) + 1)))
            curve.loss.append(log.get("loss"))
            curve.reward.append(log.get(key) if key else None)


def _save_atomic(folder: Path, write) -> None:
    from ..atomic import replace_folder

    try:
        replace_folder(folder, write)
    except OSError as exc:
        shutil.rmtree(folder.with_name(folder.name + ".partial"), ignore_errors=True)
        raise runs.disk_error(exc, folder.parent, runs.latest_checkpoint(folder.parent)) from None


def _save_final(folder: Path, trained, tok, method: str, use_peft: bool, base: _Base, merge: bool):
    """adapter/ (LoRA) and model/ (a full model, LoRA merged in) + tokenizer; returns the model to hand back."""
    if not use_peft:
        trained.eval()
        _save_atomic(folder / "model", lambda p: (trained.save_pretrained(p), tok.save_pretrained(p)))
        return trained
    _save_atomic(folder / "adapter", lambda p: (trained.save_pretrained(p), tok.save_pretrained(p)))
    if method == "qlora":  # merge into the full-precision base, not into the 4-bit one (that would lose precision)
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        fp = AutoModelForCausalLM.from_pretrained(str(base.path), local_files_only=True)
        merged = PeftModel.from_pretrained(fp, str(folder / "adapter")).merge_and_unload()
    else:
        merged = copy.deepcopy(trained).merge_and_unload()
    merged.eval()
    _save_atomic(folder / "model", lambda p: (merged.save_pretrained(p), tok.save_pretrained(p)))
    if merge:
        return merged
    trained.eval()
    return trained


def _write_card(folder: Path, r: FinetuneResult) -> None:
    c = r.config
    lines = [
        f"# {r.name}", "",
        f"Fine-tuned by labkit `%%finetune` from **{r.base}** with **{r.method}**"
        + (f" (LoRA rank {c['rank']}, alpha {c['alpha']})" if c.get("lora") else "") + ".", "",
        "| | |", "|---|---|",
        f"| steps | {r.step} of {r.max_steps}{' (stopped early)' if r.stopped else ''} |",
        f"| learning rate | {c['lr']:g} |", f"| batch | {c['batch']} x {c['grad_accum']} accumulation |",
        f"| seed | {c['seed']} |", f"| data | {c['data']} |",
        f"| trainable parameters | {r.trainable_params:,} of {r.total_params:,} |",
        f"| loss | {r.losses[0]:.4f} -> {r.losses[-1]:.4f} |" if r.losses else "| loss | - |",
        f"| time | {r.seconds:.1f} s, {r.tokens_per_s:,.0f} tokens/s |", "",
        "Files: `model/` (a transformers folder, LoRA merged in: `labkit.models.load(path)`), "
        "`adapter/` (peft adapter, LoRA runs), `checkpoints/` (resume with `--resume`), `run.json`, `data.jsonl`.",
        "", "Trained on synthetic data for teaching; not for any real use.",
    ]
    try:
        (folder / "README.md").write_text("\n".join(lines) + "\n")
    except OSError:
        pass


def heldout_loss(model, tokenizer, data, batch: int = 16, max_length: int = 256) -> float:
    """Mean loss per trained token on held-out data: the completion tokens of chat rows, every token of text rows.

    ``data``: anything ``load_data`` reads (records, a path, text). Loss masked like the SFT trainer masks it.
    """
    import torch

    ds = load_data(data, "lora")
    seqs = []
    for row in ds.rows:
        if "text" in row:
            ids = tokenizer(row["text"], add_special_tokens=False)["input_ids"][:max_length]
            seqs.append((ids, [1] * len(ids)))
        else:
            p = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, return_dict=True)["input_ids"]
            f = tokenizer.apply_chat_template(row["prompt"] + row["completion"], return_dict=True)["input_ids"]
            f = f[:max_length]
            seqs.append((f, [0] * min(len(p), len(f)) + [1] * max(0, len(f) - len(p))))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(seqs), batch):
            chunk = seqs[i:i + batch]
            n = max(len(s) for s, _ in chunk)
            ids = torch.tensor([s + [pad] * (n - len(s)) for s, _ in chunk], device=device)
            att = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s, _ in chunk], device=device)
            lab = torch.tensor([[t if m else -100 for t, m in zip(s, mk)] + [-100] * (n - len(s)) for s, mk in chunk],
                               device=device)
            logits = model(input_ids=ids, attention_mask=att).logits[:, :-1].float()
            tgt = lab[:, 1:]
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                                    ignore_index=-100, reduction="sum")
            total += float(nll)
            count += int((tgt != -100).sum())
    if was_training:
        model.train()
    return total / max(1, count)
