"""Activations torch does not have. The rest come straight from `torch.nn` via config."""
from __future__ import annotations

import torch
from torch import nn


class Maxout(nn.Module):
    """Maxout (Goodfellow et al. 2013): the max over `pieces` linear pieces.

    The layer before it produces `pieces` × the width (models read `expansion` to widen it);
    this module takes the max over each group of `pieces` consecutive channels/features:
    (N, pieces·C, …) → (N, C, …).
    """

    def __init__(self, pieces: int = 2) -> None:
        super().__init__()
        if pieces < 2:
            raise ValueError(f"maxout needs at least 2 pieces, got {pieces}")
        self.pieces = pieces

    @property
    def expansion(self) -> int:
        return self.pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        if c % self.pieces:
            raise ValueError(f"maxout over {self.pieces} pieces needs a width divisible by it, got {c}")
        return x.view(n, c // self.pieces, self.pieces, *x.shape[2:]).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"
