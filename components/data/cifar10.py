"""CIFAR-10 from a local folder with torchvision's reader (never downloads)."""
from __future__ import annotations

from pathlib import Path
import pickle

import torch

from components.data.base import check_fractions, DataNotFoundError, Split, Splits, split_indices

_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


def local_cifar10(root: str, train: bool) -> object:
    """torchvision's reader, checking that the files exist rather than their MD5 sums (so small
    locally generated files in the same format load too); torchvision is imported here (~1 s)."""
    from torchvision.datasets import CIFAR10

    class LocalCIFAR10(CIFAR10):
        def _check_integrity(self) -> bool:
            return all((Path(self.root) / self.base_folder / f).is_file() for f in _FILES)

        def _load_meta(self) -> None:
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    return LocalCIFAR10(root, train=train, download=False)


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
        check_fractions(val_fraction, 0.0)
        self.val_fraction = val_fraction

    def describe(self) -> tuple[tuple[int, int, int], int]:
        """(input shape, number of classes) without reading the batches."""
        return (3, 32, 32), 10

    def load(self, seed: int) -> Splits:
        train = local_cifar10(str(self.root), train=True)
        test = local_cifar10(str(self.root), train=False)
        to_tensor = lambda ds: Split(  # noqa: E731  (HWC uint8 → CHW uint8)
            torch.as_tensor(ds.data).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64)
        )
        full = to_tensor(train)
        tr, va, _ = split_indices(len(full), self.val_fraction, 0.0, seed)
        return Splits(full.subset(tr), full.subset(va), to_tensor(test), list(train.classes))
