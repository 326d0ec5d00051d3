"""A small VGG-style ConvNet: blocks of 3×3 convolutions, each block followed by pooling."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from components.model.layers import FRACTIONAL_RATIO, ActivationFactory, conv_block, dense_block, output_features, pool_layer


class ConvNet(nn.Module):
    """`channels[i]` is the width of block i (`convs_per_block` convs each), each block
    followed by `pool` (`max` or `fractional`) while the image is at least 2 pixels wide. The
    convolutional `body` is followed by the fully connected `classifier` and a linear `head`
    (what transfer learning re-initialises)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        convs_per_block: int = 2,
        hidden: Sequence[int] = (128,),
        activation: ActivationFactory = nn.ReLU,
        batch_norm: bool = True,
        bn_position: str = "pre_activation",
        pool: str = "max",
        dropout: float = 0.0,
        drop_connect: float = 0.0,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for width in channels:
            for _ in range(convs_per_block):
                layers += conv_block(c, width, activation, batch_norm, bn_position)
                c = width
            if min(h, w) >= 2:
                layers.append(pool_layer(pool))
                shrink = 0.5 if pool == "max" else FRACTIONAL_RATIO  # both round down
                h, w = int(h * shrink), int(w * shrink)
        self.body = nn.Sequential(*layers)
        fc: list[nn.Module] = [nn.Flatten()]
        features = output_features(self.body, tuple(input_shape))
        for units in hidden:
            fc += dense_block(features, units, activation, batch_norm, dropout, drop_connect, bn_position)
            features = units
        self.classifier = nn.Sequential(*fc)
        self.head = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.classifier(self.body(x)))
