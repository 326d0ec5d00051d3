"""Building blocks shared by the models: dense and conv blocks with the playbook's options."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
import torch.nn.functional as F

from components.regularisation import DropConnectLinear

ActivationFactory = Callable[[], nn.Module]
BN_POSITIONS = ("pre_activation", "post_activation")
FRACTIONAL_RATIO = 2**-0.5  # Graham's fractional max pooling shrinks by 1/√2 per layer


def expansion(activation: ActivationFactory) -> int:
    """How many times wider the layer before `activation` must be (Maxout's pieces; 1 otherwise)."""
    return int(getattr(activation(), "expansion", 1))


def _check_bn_position(bn_position: str) -> None:
    if bn_position not in BN_POSITIONS:
        raise ValueError(f"bn_position must be one of {BN_POSITIONS}, got {bn_position!r}")


def dense_block(
    in_features: int,
    out_features: int,
    activation: ActivationFactory,
    batch_norm: bool = False,
    dropout: float = 0.0,
    drop_connect: float = 0.0,
    bn_position: str = "pre_activation",
) -> list[nn.Module]:
    """affine → [BN] → activation → [dropout]. BN sits between the affine layer and the
    non-linearity by default (Ioffe & Szegedy; CS231n); `post_activation` puts it after."""
    _check_bn_position(bn_position)
    k = expansion(activation)
    width = out_features * k
    bias = not (batch_norm and bn_position == "pre_activation")  # BN's shift makes a bias redundant
    affine = DropConnectLinear(in_features, width, bias=bias, p=drop_connect) if drop_connect > 0 else nn.Linear(in_features, width, bias=bias)
    layers: list[nn.Module] = [affine]
    if batch_norm and bn_position == "pre_activation":
        layers.append(nn.BatchNorm1d(width))
    layers.append(activation())
    if batch_norm and bn_position == "post_activation":
        layers.append(nn.BatchNorm1d(out_features))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


def conv_block(
    in_channels: int,
    out_channels: int,
    activation: ActivationFactory,
    batch_norm: bool = True,
    bn_position: str = "pre_activation",
) -> list[nn.Module]:
    """3×3 conv (same padding) → [BN] → activation (BN placed as in `dense_block`)."""
    _check_bn_position(bn_position)
    width = out_channels * expansion(activation)
    pre = batch_norm and bn_position == "pre_activation"
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1, bias=not pre)]
    if pre:
        layers.append(nn.BatchNorm2d(width))
    layers.append(activation())
    if batch_norm and not pre:
        layers.append(nn.BatchNorm2d(out_channels))
    return layers


class FractionalMaxPool(nn.FractionalMaxPool2d):
    """`nn.FractionalMaxPool2d` draws new pooling regions on every call, in eval too; here eval
    uses one fixed region sequence (sample 0.5), so a trained model predicts deterministically."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        fixed = torch.full((x.shape[0], x.shape[1], 2), 0.5, dtype=x.dtype, device=x.device)
        return F.fractional_max_pool2d(x, self.kernel_size, self.output_size, self.output_ratio, _random_samples=fixed)


def pool_layer(kind: str, fractional_ratio: float = FRACTIONAL_RATIO) -> nn.Module:
    """`max`: 2×2 max pooling (halves the size). `fractional`: fractional max pooling (Graham
    2014) with pseudo-random regions, shrinking by `fractional_ratio` (1/√2 by default)."""
    if kind == "max":
        return nn.MaxPool2d(2)
    if kind == "fractional":
        return FractionalMaxPool(2, output_ratio=fractional_ratio)
    raise ValueError(f"pool must be 'max' or 'fractional', got {kind!r}")


@torch.no_grad()
def output_features(body: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Flattened size of `body`'s output for one input (run once at construction)."""
    was_training = body.training
    body.eval()
    features = body(torch.zeros(1, *input_shape)).flatten(1).shape[1]
    body.train(was_training)
    return features
