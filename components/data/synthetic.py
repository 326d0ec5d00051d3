"""Random but learnable images of any shape, for tests and benchmarks."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from components.data.base import check_fractions, Splits, split_arrays


class SyntheticSource:
    """Each class is a fixed random prototype image; samples are prototype + Gaussian noise.

    `noise` is the noise std relative to the prototypes' std (1.0), so 0.5 is easy and 3.0 hard.
    The data depend only on `data_seed`, not on the run's seed, so runs are comparable.
    """

    def __init__(
        self,
        num_samples: int = 2048,
        shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        noise: float = 1.0,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        data_seed: int = 1234,
    ) -> None:
        if num_samples < num_classes or num_classes < 2:
            raise ValueError(f"need num_classes ≥ 2 and num_samples ≥ num_classes, got {num_samples}, {num_classes}")
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shape must be [channels, height, width], got {list(shape)}")
        self.num_samples, self.shape, self.num_classes = num_samples, tuple(shape), num_classes
        self.noise, self.data_seed = noise, data_seed
        check_fractions(val_fraction, test_fraction)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def describe(self) -> tuple[tuple[int, ...], int]:
        """(input shape, number of classes) without generating the images."""
        return self.shape, self.num_classes

    def load(self, seed: int) -> Splits:
        g = torch.Generator().manual_seed(self.data_seed)
        prototypes = torch.randn(self.num_classes, *self.shape, generator=g)
        y = torch.arange(self.num_samples) % self.num_classes
        x = prototypes[y] + self.noise * torch.randn(self.num_samples, *self.shape, generator=g)
        x = torch.sigmoid(x)  # squash into 0..1 like real pixels
        classes = [f"class_{i}" for i in range(self.num_classes)]
        return split_arrays(x, y, classes, self.val_fraction, self.test_fraction, seed)
