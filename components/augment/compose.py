"""Combining augmentations: in sequence, or a random subset per image."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from components.augment.color import ColorJitter
from components.augment.geometric import HorizontalFlip, RandomAffine


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Compose(nn.Module):
    """Applies `ops` in order."""

    def __init__(self, ops: Sequence[nn.Module]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x


class RandomSubset(nn.Module):
    """Each op is applied to each image independently with probability p, so every image gets
    its own random combination (and, inside each op, its own parameters)."""

    def __init__(self, ops: Sequence[nn.Module], p: float = 0.5) -> None:
        super().__init__()
        self.ops, self.p = nn.ModuleList(ops), p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            chosen = (torch.rand(x.shape[0], device=x.device) < self.p).view(-1, 1, 1, 1)
            x = torch.where(chosen, op(x), x)
        return x


class RandomCombo(RandomSubset):
    """CS231n's "random mix/combinations": rotate, translate, stretch, shear and colour jitter
    (and optionally flip), each applied per image with probability p. `magnitude` scales every
    op's range at once (1.0: ±15°, ±10 % shift, ±10 % zoom, 1.2× aspect, ±10° shear, 0.3 jitter)."""

    def __init__(self, magnitude: float = 1.0, p: float = 0.5, flip: bool = False) -> None:
        m = magnitude
        if m < 0:
            raise ValueError(f"magnitude must be ≥ 0, got {m}")
        ops: list[nn.Module] = [HorizontalFlip(p=1.0)] if flip else []
        ops += [
            RandomAffine(degrees=15 * m),
            RandomAffine(translate=0.1 * m),
            RandomAffine(scale=(1 - 0.1 * m, 1 + 0.1 * m), aspect=1 + 0.2 * m),
            RandomAffine(shear=10 * m),
            ColorJitter(brightness=0.3 * m, contrast=0.3 * m, saturation=0.3 * m, hue=min(0.05 * m, 0.5)),
        ]
        super().__init__(ops, p)
        self.magnitude = magnitude
