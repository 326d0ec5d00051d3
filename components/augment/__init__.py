"""Batched, label-preserving augmentation with independent random parameters per image.

Each op is an `nn.Module` taking a float N×C×H×W batch on any device; it is applied
to training batches only (the training step calls it, evaluation never does).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
import torch.nn.functional as F


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class HorizontalFlip(nn.Module):
    """Mirrors each image left↔right with probability p (drawn per image)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(x.shape[0], device=x.device) < self.p
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


class RandomCrop(nn.Module):
    """Pads by `padding` pixels (reflect) and crops back to the original size at a random
    offset per image: a translation by up to ±padding pixels."""

    def __init__(self, padding: int = 4) -> None:
        super().__init__()
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        p = self.padding
        padded = F.pad(x, (p, p, p, p), mode="reflect" if p < min(h, w) else "replicate")
        dy = torch.randint(0, 2 * p + 1, (n,), device=x.device)
        dx = torch.randint(0, 2 * p + 1, (n,), device=x.device)
        rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1)
        cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w)
        batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
        chan = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
        return padded[batch, chan, rows, cols]


class Compose(nn.Module):
    """Applies `ops` in order."""

    def __init__(self, ops: Sequence[nn.Module]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x
