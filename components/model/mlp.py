"""A fully connected network on flattened images."""
from __future__ import annotations

from collections.abc import Sequence
import math

import torch
from torch import nn

from components.model.layers import ActivationFactory, dense_block


class MLP(nn.Module):
    """flatten → `hidden` dense blocks → linear classifier (`head`)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        activation: ActivationFactory = nn.ReLU,
        batch_norm: bool = False,
        bn_position: str = "pre_activation",
        dropout: float = 0.0,
        drop_connect: float = 0.0,
    ) -> None:
        super().__init__()
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be ≥ 1, got {list(hidden)}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += dense_block(width, h, activation, batch_norm, dropout, drop_connect, bn_position)
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
