"""CIFAR-10 from a local folder with torchvision's reader (never downloads)."""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import CIFAR10

from components.data.base import DataNotFoundError, Split, Splits, split_indices

_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


class _LocalCIFAR10(CIFAR10):
    """torchvision's reader, checking that the files exist rather than their MD5 sums
    (so small locally generated files in the same format load too)."""

    def _check_integrity(self) -> bool:
        return all((Path(self.root) / self.base_folder / f).is_file() for f in _FILES)


class CIFAR10Source:
    """`root` holds `cifar-10-batches-py/` (data_batch_1..5, test_batch, batches.meta).

    The official test batch is the test split; `val_fraction` of the training batches
    (seeded) is the validation split.
    """

    def __init__(self, root: str, val_fraction: float = 0.1) -> None:
        self.root = Path(root).expanduser()
        folder = self.root / "cifar-10-batches-py"
        missing = [f for f in _FILES if not (folder / f).is_file()]
        if missing:
            raise DataNotFoundError(
                f"CIFAR-10 was not found: {folder} is missing {', '.join(missing)}. "
                "raysitter never downloads data. Download the 'CIFAR-10 python version' archive "
                "(cifar-10-python.tar.gz) from https://www.cs.toronto.edu/~kriz/cifar.html, unpack it "
                "so that ROOT/cifar-10-batches-py/ exists, and pass data.root=ROOT."
            )
        self.val_fraction = val_fraction

    def load(self, seed: int) -> Splits:
        train = _LocalCIFAR10(str(self.root), train=True, download=False)
        test = _LocalCIFAR10(str(self.root), train=False, download=False)
        to_tensor = lambda ds: Split(  # noqa: E731  (HWC uint8 → CHW uint8)
            torch.as_tensor(ds.data).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64)
        )
        full = to_tensor(train)
        tr, va, _ = split_indices(len(full), self.val_fraction, 0.0, seed)
        return Splits(full.subset(tr), full.subset(va), to_tensor(test), list(train.classes))
