"""Optimizer helpers. The optimizers and schedules themselves come from `torch.optim`."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def param_groups(model: nn.Module, lr: float | None = None, lr_scales: dict[int, float] | None = None) -> list[dict]:
    """Weight decay applies to weights (matrices, conv kernels) only, never to biases or
    normalisation parameters (1-D tensors): decided here, once, for every optimizer.

    The no-decay groups carry `weight_decay=0`; the decay groups inherit the optimizer's own
    `weight_decay` argument. `lr_scales` (id(parameter) → multiplier of `lr`) splits the
    groups further, e.g. pretrained layers at lr × 0.1 when fine-tuning. Frozen parameters
    (requires_grad=False) are left out.
    """
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            scale = (lr_scales or {}).get(id(p), 1.0)
            groups.setdefault((p.ndim >= 2, scale), []).append(p)
    out = []
    for (decay, scale), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], -kv[0][1])):
        group: dict = {"params": params}
        if not decay:
            group["weight_decay"] = 0.0
        if scale != 1.0 and lr is not None:
            group["lr"] = lr * scale
        out.append(group)
    return out


def build_optimizer(
    factory: Callable[..., torch.optim.Optimizer], model: nn.Module, lr_scales: dict[int, float] | None = None
) -> torch.optim.Optimizer:
    """`factory` is a partial of a `torch.optim` class with its hyperparameters bound. Without
    weight decay or learning-rate scales every parameter goes in one group (L-BFGS accepts
    nothing else)."""
    keywords = getattr(factory, "keywords", {})
    if not keywords.get("weight_decay", 0.0) and not lr_scales:
        return factory([p for p in model.parameters() if p.requires_grad])
    return factory(param_groups(model, keywords.get("lr"), lr_scales))
