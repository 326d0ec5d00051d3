"""CS231n's weight-initialisation experiment: push random data through a deep, wide MLP and
watch each layer's activations (mean, std, histogram) for a given activation and init."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from components.init import WeightInit


@torch.no_grad()
def layer_activations(
    activation: Callable[[], nn.Module],
    init: WeightInit,
    depth: int = 10,
    width: int = 500,
    num_samples: int = 1000,
    seed: int = 0,
    histogram_samples: int = 5000,
) -> list[dict]:
    """One dict per layer: `layer` (1-based), `mean`, `std`, and `values` (a sample for histograms).
    Inputs are N(0, 1); biases follow `init` (the lecture uses none, i.e. init.bias=0)."""
    torch.manual_seed(seed)
    x = torch.randn(num_samples, width)
    rows = []
    for layer in range(1, depth + 1):
        affine = init(nn.Linear(width, width))
        x = activation()(affine(x))
        pick = torch.randperm(x.numel())[:histogram_samples]
        rows.append({"layer": layer, "mean": float(x.mean()), "std": float(x.std()), "values": x.flatten()[pick].clone()})
    return rows
