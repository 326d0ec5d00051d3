"""Combining augmentations: in sequence, or a random subset per image."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from components.augment.color import ColorJitter
from components.augment.geometric import HorizontalFlip, RandomAffine, identity, resample


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def runs(ops: Sequence[nn.Module]) -> list[list[nn.Module]]:
    """`ops` cut into runs: consecutive geometric ops (those with a `sampling` matrix) together,
    every other op alone."""
    out: list[list[nn.Module]] = []
    for op in ops:
        geometric = hasattr(op, "sampling")
        if geometric and out and hasattr(out[-1][0], "sampling"):
            out[-1].append(op)
        else:
            out.append([op])
    return out


def fill_of(ops: Sequence[nn.Module]) -> str:
    """The padding of a composed resample: the first op's that samples outside the image (a
    crop's mirror, an affine's `fill`), zeros when none does."""
    return next((op.fill for op in ops if getattr(op, "fill", None)), "zeros")


class Compose(nn.Module):
    """Applies `ops` in order. Two or more geometric ops in a row (flip, crop, rotate,
    translate, stretch, shear) are one resample of the batch: their per-image matrices are
    multiplied in order and the images sampled once (bilinear; padding: `fill_of`)."""

    def __init__(self, ops: Sequence[nn.Module]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for run in runs(self.ops):
            if len(run) == 1:
                x = run[0](x)
                continue
            n = x.shape[0]
            sampling = identity(n, x.device)
            for op in run:  # applying A then B samples the input at T_A · T_B · p
                sampling = sampling @ op.sampling(n, x.shape, x.device)
            x = resample(x, sampling, fill_of(run))
        return x


class RandomSubset(nn.Module):
    """Each op is applied to each image independently with probability p, so every image gets
    its own random combination (and, inside each op, its own parameters). Consecutive
    geometric ops are one resample (an op an image skips is the identity in its product)."""

    def __init__(self, ops: Sequence[nn.Module], p: float = 0.5) -> None:
        super().__init__()
        self.ops, self.p = nn.ModuleList(ops), p

    def chosen(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.rand(n, device=device) < self.p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        for run in runs(self.ops):
            if len(run) == 1:
                picked = self.chosen(n, x.device).view(-1, 1, 1, 1)
                x = torch.where(picked, run[0](x), x)
                continue
            sampling, eye = identity(n, x.device), identity(n, x.device)
            for op in run:
                picked = self.chosen(n, x.device)
                sampling = sampling @ torch.where(picked.view(-1, 1, 1), op.sampling(n, x.shape, x.device), eye)
            x = resample(x, sampling, fill_of(run))
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
