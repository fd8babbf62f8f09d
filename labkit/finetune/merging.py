"""Model merging: linear averaging, SLERP and TIES, on models of one architecture.

Written by hand because each is a few lines that teach the idea (mergekit does the same at scale, with many more
methods and memory-mapped shards). Every function returns a *new* model; the inputs are not modified.

- ``linear(models, weights)``: the weighted mean of the weights ("model soup").
- ``slerp(a, b, t)``: spherical interpolation, tensor by tensor: keeps the norm that a straight line would shrink.
- ``ties(base, models, density, weights)``: TIES-merging (Yadav et al. 2023) of the *task vectors* (fine-tuned
  minus base): trim each to its largest ``density`` fraction, elect a sign per weight by total mass, and average
  only the values that agree with it; add the result to the base.
"""
from __future__ import annotations

import copy

from ..errors import LabkitUsageError


def _states(models):
    states = [m.state_dict() for m in models]
    keys = list(states[0])
    for i, s in enumerate(states[1:], 1):
        if list(s) != keys or any(s[k].shape != states[0][k].shape for k in keys):
            raise LabkitUsageError(f"model {i} does not have the same architecture as model 0: only models of one "
                                   f"architecture (e.g. fine-tunes of the same base) can be merged")
    return states, keys


def _new(template, state):
    out = copy.deepcopy(template)
    out.load_state_dict(state)
    return out.eval()


def _weights(weights, n):
    if weights is None:
        return [1.0 / n] * n
    if len(weights) != n:
        raise LabkitUsageError(f"{len(weights)} weights for {n} models")
    return [float(w) for w in weights]


def linear(models, weights=None):
    """Weighted average of the parameters (weights default to equal; they need not sum to 1)."""
    if len(models) < 2:
        raise LabkitUsageError("merging needs at least two models")
    states, keys = _states(models)
    w = _weights(weights, len(models))
    merged = {}
    for k in keys:
        t = states[0][k]
        if not t.is_floating_point():
            merged[k] = t.clone()
            continue
        merged[k] = sum(wi * s[k].float() for wi, s in zip(w, states)).to(t.dtype)
    return _new(models[0], merged)


def slerp_tensor(a, b, t: float, eps: float = 1e-8):
    """Spherical interpolation between two tensors viewed as vectors; falls back to a straight line when they
    are (nearly) parallel."""
    import torch

    va, vb = a.flatten().float(), b.flatten().float()
    na, nb = va.norm(), vb.norm()
    if na < eps or nb < eps:
        return ((1 - t) * va + t * vb).view_as(a).to(a.dtype)
    cos = torch.clamp(torch.dot(va / na, vb / nb), -1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4:
        out = (1 - t) * va + t * vb
    else:
        so = torch.sin(omega)
        out = torch.sin((1 - t) * omega) / so * va + torch.sin(t * omega) / so * vb
    return out.view_as(a).to(a.dtype)


def slerp(a, b, t: float = 0.5):
    """SLERP of two models, tensor by tensor (``t=0`` gives ``a``, ``t=1`` gives ``b``)."""
    if not 0.0 <= t <= 1.0:
        raise LabkitUsageError(f"t = {t} must be between 0 and 1")
    states, keys = _states([a, b])
    merged = {k: slerp_tensor(states[0][k], states[1][k], t) if states[0][k].is_floating_point() else states[0][k]
              for k in keys}
    return _new(a, merged)


def task_vector(base, model) -> dict:
    """What fine-tuning changed: ``model - base``, per tensor."""
    states, keys = _states([base, model])
    return {k: states[1][k].float() - states[0][k].float() for k in keys if states[0][k].is_floating_point()}


def ties(base, models, density: float = 0.2, weights=None, scale: float = 1.0):
    """TIES-merge fine-tunes of ``base``: trim, elect sign, disjoint mean (see the module docstring)."""
    import torch

    if not 0.0 < density <= 1.0:
        raise LabkitUsageError(f"density = {density} must be in (0, 1]")
    if not models:
        raise LabkitUsageError("ties needs at least one fine-tuned model")
    states, keys = _states([base] + list(models))
    w = _weights(weights, len(models)) if weights is not None else [1.0] * len(models)
    merged = {}
    for k in keys:
        b = states[0][k]
        if not b.is_floating_point():
            merged[k] = b.clone()
            continue
        tvs = torch.stack([wi * (s[k].float() - b.float()) for wi, s in zip(w, states[1:])])
        flat = tvs.view(len(models), -1)
        keep = max(1, int(round(density * flat.shape[1])))
        # 1. trim: keep each task vector's `keep` largest magnitudes
        thresh = flat.abs().kthvalue(flat.shape[1] - keep + 1, dim=1, keepdim=True).values
        trimmed = torch.where(flat.abs() >= thresh, flat, torch.zeros_like(flat))
        # 2. elect: the sign with the larger total mass, per weight
        sign = torch.sign(trimmed.sum(0))
        # 3. disjoint mean: average only the values that agree with the elected sign
        agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
        total = (trimmed * agree).sum(0)
        count = agree.sum(0).clamp(min=1)
        merged[k] = (b.float() + scale * (total / count).view_as(b)).to(b.dtype)
    return _new(base, merged)
