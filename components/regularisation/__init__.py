"""Regularisers torch does not have (dropout itself is `nn.Dropout`)."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class DropConnectLinear(nn.Linear):
    """DropConnect (Wan et al. 2013): during training each *weight* is zeroed with probability
    `p` (a fresh mask per forward pass) and the survivors are scaled by 1/(1-p), so the expected
    pre-activation equals the full layer's; in eval the full weights are used, deterministically."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, p: float = 0.5) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if not 0 <= p < 1:
            raise ValueError(f"DropConnect probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return F.linear(x, self.weight, self.bias)
        mask = torch.rand_like(self.weight) >= self.p
        return F.linear(x, self.weight * mask / (1 - self.p), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"
