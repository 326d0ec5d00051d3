"""Zero-centering (and optional std scaling) with statistics from the training split only.

CS231n: subtract the mean image statistics computed on the *training* data and
apply the very same numbers to validation, test and deployment inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Mode = Literal["per_channel", "per_dataset", "none"]


@dataclass
class Normalizer:
    """`(x - mean) / std` with mean/std of shape (C,) broadcast over N×C×H×W float input."""

    mean: torch.Tensor
    std: torch.Tensor
    mode: str = "per_channel"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        return (x - self.mean.to(x.device).view(shape)) / self.std.to(x.device).view(shape)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        return cls(torch.tensor(d["mean"]), torch.tensor(d["std"]), d.get("mode", "per_channel"))


class ZeroCenter:
    """Fits a `Normalizer` on training images.

    mode: `per_channel` (one mean per colour channel, the VGG recipe), `per_dataset`
    (one mean over all pixels) or `none`. scale: also divide by the std.
    """

    def __init__(self, mode: Mode = "per_channel", scale: bool = True, eps: float = 1e-6) -> None:
        if mode not in ("per_channel", "per_dataset", "none"):
            raise ValueError(f"preprocess mode must be per_channel, per_dataset or none, got {mode!r}")
        self.mode, self.scale, self.eps = mode, scale, eps

    def fit(self, x_train: torch.Tensor) -> Normalizer:
        """x_train: float N×C×H×W training images."""
        c = x_train.shape[1]
        x = x_train.double()
        if self.mode == "none":
            mean, std = torch.zeros(c), torch.ones(c)
        elif self.mode == "per_channel":
            mean = x.mean(dim=(0, 2, 3))
            std = x.std(dim=(0, 2, 3)) if self.scale else torch.ones(c)
        else:
            mean = x.mean().repeat(c)
            std = x.std().repeat(c) if self.scale else torch.ones(c)
        return Normalizer(mean.float(), std.float().clamp_min(self.eps), self.mode)


class Preprocessed(torch.nn.Module):
    """`model(normalizer(x))` as one module taking raw images in 0..1: what gets exported, so a
    deployed model carries its own preprocessing."""

    def __init__(self, model: torch.nn.Module, normalizer: Normalizer) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", normalizer.mean.view(1, -1, 1, 1).clone())
        self.register_buffer("std", normalizer.std.view(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)
