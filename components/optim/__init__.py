"""Optimizer helpers. The optimizers and schedules themselves come from `torch.optim`."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def param_groups(model: nn.Module) -> list[dict]:
    """Weight decay applies to weights (matrices, conv kernels) only, never to biases or
    normalisation parameters (1-D tensors): decided here, once, for every optimizer.

    The no-decay group carries `weight_decay=0`; the decay group inherits the optimizer's own
    `weight_decay` argument.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(factory: Callable[..., torch.optim.Optimizer], model: nn.Module) -> torch.optim.Optimizer:
    """`factory` is a partial of a `torch.optim` class with its hyperparameters bound. Without
    weight decay every parameter goes in one group (L-BFGS accepts nothing else)."""
    decay = getattr(factory, "keywords", {}).get("weight_decay", 0.0)
    if not decay:
        return factory([p for p in model.parameters() if p.requires_grad])
    return factory(param_groups(model))
