"""Batched, label-preserving augmentation with independent random parameters per image.

Every op is an `nn.Module` on a float N×C×H×W batch in 0..1, on any device, for 1- and
3-channel images; each image draws its own parameters (a torchvision v2 transform called on a
batch tensor draws one set for the whole batch, which is not what augmentation needs). The
training step applies them to training batches only.
"""
from components.augment.color import ColorJitter
from components.augment.geometric import HorizontalFlip, RandomAffine, RandomCrop
from components.augment.compose import Compose, Identity, RandomCombo, RandomSubset

__all__ = [
    "ColorJitter",
    "Compose",
    "HorizontalFlip",
    "Identity",
    "RandomAffine",
    "RandomCombo",
    "RandomCrop",
    "RandomSubset",
]
