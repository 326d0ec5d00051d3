"""scikit-learn's bundled 8×8 handwritten digits: 1797 real images, no download."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from components.data.base import check_fractions, Splits, split_arrays


class DigitsSource:
    """The embedded default dataset.

    `classes` keeps only those digits (relabelled 0..k-1 in the given order), e.g.
    `[0, 1, 2, 3, 4]` for a pretraining task and `[5, 6, 7, 8, 9]` for a transfer task.
    `train_per_class` keeps only that many training images of each class (few-shot transfer);
    validation and test stay whole.
    """

    def __init__(
        self,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        classes: Sequence[int] | None = None,
        train_per_class: int | None = None,
    ) -> None:
        check_fractions(val_fraction, test_fraction)
        if train_per_class is not None and train_per_class < 1:
            raise ValueError(f"train_per_class must be ≥ 1 (or null for all), got {train_per_class}")
        self.train_per_class = train_per_class
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.classes = list(classes) if classes is not None else list(range(10))
        if not self.classes or any(c not in range(10) for c in self.classes):
            raise ValueError(f"digits classes must be a non-empty subset of 0..9, got {self.classes}")

    def describe(self) -> tuple[tuple[int, int, int], int]:
        """(input shape, number of classes) without loading the images."""
        return (1, 8, 8), len(self.classes)

    def load(self, seed: int) -> Splits:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.as_tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)  # pixel values 0..16
        y = torch.as_tensor(bunch.target, dtype=torch.int64)
        keep = torch.isin(y, torch.tensor(self.classes))
        relabel = torch.full((10,), -1, dtype=torch.int64)
        relabel[torch.tensor(self.classes)] = torch.arange(len(self.classes))
        names = [str(c) for c in self.classes]
        splits = split_arrays(x[keep], relabel[y[keep]], names, self.val_fraction, self.test_fraction, seed)
        return splits.few_shot(self.train_per_class, seed)
