"""Split containers and the seeded splitting every source shares."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from components.data.files import in_files


class DataNotFoundError(FileNotFoundError):
    """The dataset's files are not where the config says they are."""


@dataclass
class Split:
    """Images `x` (N×C×H×W; uint8 in 0..255 or float32 in 0..1) and labels `y` (N, int64)."""

    x: torch.Tensor  # or ImageFiles: images read from their files on demand
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.ndim != 4:
            raise ValueError(f"images must be N×C×H×W, got shape {tuple(self.x.shape)}")
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} images but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: torch.Tensor) -> Split:
        x = self.x.subset(index) if in_files(self.x) else self.x[index]  # files stay unread
        return Split(x, self.y[index])

    def sample(self, limit: int = 4096, seed: int = 0) -> Split:
        """In memory: the split itself. Read from files: a seeded subset of at most `limit`
        images, read into memory (what preprocessing statistics and probes are computed on)."""
        if not in_files(self.x):
            return self
        pick = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        return Split(self.x[pick], self.y[pick])

    def as_float(self) -> torch.Tensor:
        """Images as float32 in 0..1 (uint8 is divided by 255); images in files are read."""
        x = self.x[:] if in_files(self.x) else self.x
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    classes: list[str]

    def few_shot(self, per_class: int | None, seed: int) -> Splits:
        """Keeps at most `per_class` training examples of each class (a seeded choice); val and
        test stay whole. `None` keeps everything."""
        if per_class is None:
            return self
        if per_class < 1:
            raise ValueError(f"train_per_class must be ≥ 1, got {per_class}")
        g = torch.Generator().manual_seed(seed + 7)
        keep = []
        for c in range(len(self.classes)):
            idx = (self.train.y == c).nonzero().flatten()
            keep.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
        index = torch.cat(keep).sort().values
        return Splits(self.train.subset(index), self.val, self.test, self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must each be in [0, 1) "
            "and sum to less than 1"
        )


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A seeded permutation of range(n) cut into train / val / test index tensors."""
    check_fractions(val_fraction, test_fraction)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return perm[n_val + n_test :], perm[:n_val], perm[n_val : n_val + n_test]


def split_arrays(
    x: torch.Tensor, y: torch.Tensor, classes: list[str], val_fraction: float, test_fraction: float, seed: int
) -> Splits:
    train, val, test = split_indices(len(y), val_fraction, test_fraction, seed)
    full = Split(x, y)
    return Splits(full.subset(train), full.subset(val), full.subset(test), classes)
