"""Weight initialisation schemes applied to every affine layer (Linear, Conv) of a model.

The scheme itself is a `torch.nn.init` function (bound by config); norm layers keep their
(1, 0) initialisation and PReLU slopes keep theirs.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class WeightInit:
    """`weight(tensor)` initialises each affine weight in place (None keeps PyTorch's default);
    biases are set to `bias` (None keeps the default; CS231n mentions a small positive bias,
    e.g. 0.01, for ReLU units)."""

    def __init__(self, weight: Callable[[torch.Tensor], torch.Tensor] | None = None, bias: float | None = None) -> None:
        self.weight, self.bias = weight, bias

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> nn.Module:
        for module in model.modules():
            if isinstance(module, AFFINE):
                if self.weight is not None:
                    self.weight(module.weight)
                if self.bias is not None and module.bias is not None:
                    module.bias.fill_(self.bias)
        return model
