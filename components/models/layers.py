"""Small building blocks shared by the models."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

ActivationFactory = Callable[[], nn.Module]


def dense_block(
    in_features: int, out_features: int, activation: ActivationFactory, batch_norm: bool, dropout: float
) -> list[nn.Module]:
    """affine → [batch norm] → activation → [dropout]: BN sits between the affine layer and
    the non-linearity (Ioffe & Szegedy), and the affine bias is redundant under BN."""
    layers: list[nn.Module] = [nn.Linear(in_features, out_features, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(out_features))
    layers.append(activation())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


def conv_block(in_channels: int, out_channels: int, activation: ActivationFactory, batch_norm: bool) -> list[nn.Module]:
    """3×3 conv (same padding) → [batch norm] → activation."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(activation())
    return layers
