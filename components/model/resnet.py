"""A small CIFAR-style ResNet (He et al. 2016) with stochastic depth (Huang et al. 2016)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from components.model.layers import ActivationFactory, dense_block, expansion


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class BasicBlock(nn.Module):
    """conv3×3 → BN → act → conv3×3 → BN, added to the shortcut, then act.

    The residual branch is dropped for a whole sample with probability `drop_prob` during
    training (stochastic depth, `torchvision.ops.StochasticDepth`, rescaled so eval needs no
    change). With Maxout the first conv is widened by its pieces and the post-addition
    activation is left out (it would change the channel count of the sum)."""

    def __init__(self, in_c: int, out_c: int, stride: int, activation: ActivationFactory, batch_norm: bool, drop_prob: float) -> None:
        super().__init__()
        k = expansion(activation)
        self.branch = nn.Sequential(
            nn.Conv2d(in_c, out_c * k, 3, stride=stride, padding=1, bias=not batch_norm),
            _norm(out_c * k, batch_norm),
            activation(),
            nn.Conv2d(out_c, out_c, 3, padding=1, bias=not batch_norm),
            _norm(out_c, batch_norm),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_c != out_c:
            self.shortcut = nn.Sequential(nn.Conv2d(in_c, out_c, 1, stride=stride, bias=not batch_norm), _norm(out_c, batch_norm))
        from torchvision.ops import StochasticDepth  # here: torchvision costs ~1 s to import, most runs need none of it

        self.drop = StochasticDepth(drop_prob, mode="row")
        self.out_act = activation() if k == 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_act(self.shortcut(x) + self.drop(self.branch(x)))


class ResNet(nn.Module):
    """stem conv → stages of `blocks_per_stage` BasicBlocks (`widths[i]` channels; stride 2 at
    the start of every stage but the first) → global average pooling (`body`) → optional dense
    `classifier` → linear `head`. `stochastic_depth` is the drop probability of the last
    block, rising linearly from 0 for the first (the paper's linear decay rule)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        widths: Sequence[int] = (16, 32, 64),
        blocks_per_stage: int = 2,
        activation: ActivationFactory = nn.ReLU,
        batch_norm: bool = True,
        stochastic_depth: float = 0.0,
        hidden: Sequence[int] = (),
        dropout: float = 0.0,
        drop_connect: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= stochastic_depth < 1:
            raise ValueError(f"stochastic_depth must be in [0, 1), got {stochastic_depth}")
        k = expansion(activation)
        c = widths[0]
        layers: list[nn.Module] = [nn.Conv2d(input_shape[0], c * k, 3, padding=1, bias=not batch_norm), _norm(c * k, batch_norm), activation()]
        total = len(widths) * blocks_per_stage
        index = 0
        for stage, width in enumerate(widths):
            for b in range(blocks_per_stage):
                stride = 2 if stage > 0 and b == 0 else 1
                drop = stochastic_depth * index / max(total - 1, 1)
                layers.append(BasicBlock(c, width, stride, activation, batch_norm, drop))
                c, index = width, index + 1
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        fc: list[nn.Module] = []
        for units in hidden:
            fc += dense_block(c, units, activation, batch_norm=False, dropout=dropout, drop_connect=drop_connect)
            c = units
        if not hidden and dropout > 0:
            fc.append(nn.Dropout(dropout))
        self.classifier = nn.Sequential(*fc)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.classifier(self.body(x)))
