"""Schedules torch.optim.lr_scheduler does not have under this name."""
from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR


class _InverseTime:
    """Picklable 1/(1 + k·t) factor (a lambda would not survive checkpoint state_dicts)."""

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def __call__(self, t: int) -> float:
        return 1.0 / (1.0 + self.decay * t)


class InverseTimeLR(LambdaLR):
    """1/t decay: lr_t = lr_0 / (1 + decay · t), t counted in scheduler steps."""

    def __init__(self, optimizer: torch.optim.Optimizer, decay: float = 0.1, last_epoch: int = -1) -> None:
        if decay < 0:
            raise ValueError(f"inverse-time decay must be ≥ 0, got {decay}")
        super().__init__(optimizer, _InverseTime(decay), last_epoch=last_epoch)
