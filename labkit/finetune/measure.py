"""Measure what a training step costs: seconds, and the activation memory kept for the backward pass.

Activation memory is counted exactly with ``torch.autograd.graph.saved_tensors_hooks``: every tensor autograd
saves for backward passes through the hook, so the sum of their sizes is what gradient checkpointing and bf16
autocast cut. (Process RSS on a CPU is too coarse and too noisy for a 1-second measurement.)
"""
from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class StepCost:
    setting: str
    seconds_per_step: float
    activation_bytes: int  # peak of saved-for-backward tensors within one micro-batch
    loss: float
    grad_norm: float

    def row(self) -> dict:
        return {"setting": self.setting, "s/step": round(self.seconds_per_step, 4),
                "activations MB": round(self.activation_bytes / 2**20, 2), "loss": round(self.loss, 4)}


def step_cost(model, input_ids, *, grad_accum: int = 1, checkpointing: bool = False, bf16: bool = False,
              steps: int = 3, setting: str = "") -> StepCost:
    """Time ``steps`` forward+backward passes over ``input_ids`` (one optimizer step's worth, split into
    ``grad_accum`` micro-batches) and count the activation bytes saved for backward. No optimizer step is taken,
    so every setting sees the same weights and the gradients can be compared."""
    import torch

    if input_ids.shape[0] % grad_accum:
        raise ValueError(f"batch {input_ids.shape[0]} is not divisible by grad_accum {grad_accum}")
    import warnings

    model.train()
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x names
        def enable():
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        disable = model.activation_checkpointing_disable
    else:
        def enable():
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        disable = model.gradient_checkpointing_disable
    model.config.use_cache = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if checkpointing:
            enable()
        else:
            disable()
    micro = input_ids.chunk(grad_accum)
    peak = [0]
    live = [0]

    def pack(t):
        live[0] += t.numel() * t.element_size()
        peak[0] = max(peak[0], live[0])
        return t

    def unpack(t):
        return t

    times, loss_value = [], 0.0
    try:
        for _ in range(steps):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            total = 0.0
            for mb in micro:
                live[0] = 0
                with torch.autograd.graph.saved_tensors_hooks(pack, unpack), \
                        torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = model(input_ids=mb, labels=mb).loss / grad_accum
                loss.backward()
                total += float(loss.detach())
            times.append(time.perf_counter() - t0)
            loss_value = total
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            disable()
    norm = float(torch.sqrt(sum((p.grad.float() ** 2).sum() for p in model.parameters() if p.grad is not None)))
    times.sort()
    return StepCost(setting or _label(grad_accum, checkpointing, bf16), times[len(times) // 2], peak[0], loss_value, norm)


def _label(grad_accum, checkpointing, bf16) -> str:
    parts = [f"accumulate {grad_accum}" if grad_accum > 1 else "plain"]
    if checkpointing:
        parts.append("checkpointing")
    if bf16:
        parts.append("bf16 autocast")
    return " + ".join(parts)


def fit_power_law(x, y):
    """Fit ``y = a * x^(-b)`` by least squares on log-log axes; returns (a, b)."""
    import numpy as np

    slope, intercept = np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)
    return float(np.exp(intercept)), float(-slope)


@dataclass
class TrainState:
    """Bytes a training step keeps besides activations, counted from the tensors themselves after one real
    AdamW step: the weights, the gradients and the optimizer's moments."""

    weights: int
    grads: int
    optimizer: int

    @property
    def total(self) -> int:
        return self.weights + self.grads + self.optimizer


def train_state_bytes(model, input_ids, *, inplace: bool = False) -> TrainState:
    """One AdamW step on a copy of ``model`` (only its trainable parameters), then count the bytes of every
    weight, every gradient and every optimizer state tensor. The model itself is not changed, unless
    ``inplace=True``: then the step is taken on ``model`` itself (its weights move by one step and keep their
    gradients), which saves a whole copy of the weights at the peak, for a model the caller has no further use for."""
    import copy

    import torch

    m = model if inplace else copy.deepcopy(model)
    m.train()
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6)
    loss = m(input_ids=input_ids, labels=input_ids).loss
    loss.backward()
    opt.step()
    size = lambda t: t.numel() * t.element_size()  # noqa: E731
    weights = sum(size(p) for p in m.parameters()) + sum(size(b) for b in m.buffers())
    grads = sum(size(p.grad) for p in m.parameters() if p.grad is not None)
    state = sum(size(v) for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
    del m, opt
    return TrainState(weights, grads, state)
