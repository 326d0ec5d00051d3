"""A small VGG-style ConvNet: blocks of 3×3 convolutions, each block followed by 2×2 max pooling."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from components.models.layers import ActivationFactory, conv_block, dense_block


class ConvNet(nn.Module):
    """`channels[i]` is the width of block i (`convs_per_block` convs each); pooling halves the
    spatial size after each block while it is at least 2. The convolutional `body` is followed
    by `classifier` dense layers and a linear `head` (the part transfer learning replaces)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        convs_per_block: int = 2,
        hidden: Sequence[int] = (128,),
        activation: ActivationFactory = nn.ReLU,
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for width in channels:
            for _ in range(convs_per_block):
                layers += conv_block(c, width, activation, batch_norm)
                c = width
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        self.body = nn.Sequential(*layers)
        fc: list[nn.Module] = [nn.Flatten()]
        features = c * h * w
        for units in hidden:
            fc += dense_block(features, units, activation, batch_norm, dropout)
            features = units
        self.classifier = nn.Sequential(*fc)
        self.head = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.classifier(self.body(x)))
