"""scikit-learn's bundled 8×8 handwritten digits: 1797 real images, no download."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
        images, target = digits_arrays()
        x = torch.as_tensor(images, dtype=torch.float32).div_(16.0).unsqueeze(1)  # pixel values 0..16
        y = torch.as_tensor(target, dtype=torch.int64)
        keep = torch.isin(y, torch.tensor(self.classes))
        relabel = torch.full((10,), -1, dtype=torch.int64)
        relabel[torch.tensor(self.classes)] = torch.arange(len(self.classes))
        names = [str(c) for c in self.classes]
        splits = split_arrays(x[keep], relabel[y[keep]], names, self.val_fraction, self.test_fraction, seed)
        return splits.few_shot(self.train_per_class, seed)


def digits_arrays() -> tuple[Any, Any]:
    """scikit-learn's digits (1797 images 8×8, labels 0..9), read from the file its wheel ships
    (what `load_digits` reads) without importing scikit-learn, which costs ~1.5 s in every
    driver, worker and trial; `load_digits` itself where that file is not found."""
    import gzip
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz" if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)

