"""Datasets as in-memory tensor splits.

Every source is a small class whose constructor checks that the data exists
(so a bad path fails in the driver, before Ray starts) and whose `load(seed)`
returns deterministic train/val/test splits.
"""
from components.data.base import DataNotFoundError, Split, Splits, split_indices
from components.data.cifar10 import CIFAR10Source
from components.data.digits import DigitsSource
from components.data.imagefolder import ImageFolderSource
from components.data.synthetic import SyntheticSource

__all__ = [
    "CIFAR10Source",
    "DataNotFoundError",
    "DigitsSource",
    "ImageFolderSource",
    "Split",
    "Splits",
    "SyntheticSource",
    "split_indices",
]
