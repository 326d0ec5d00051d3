"""Builds components from a plain resolved config dict (what crosses into Ray workers).

The only place that maps config nodes to objects: everything goes through `_target_`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.utils import instantiate
import torch
from torch import nn

from components.optimizer import build_optimizer
from components.preprocess import Normalizer

# Keys of ours inside the optimizer and scheduler nodes (not arguments of the torch class):
OPTIMIZER_KEYS = ("full_batch",)  # one optimizer step per epoch over the whole training split
SCHEDULER_KEYS = ("interval",)  # "epoch" or "step": when scheduler.step() is called


def make(node: dict[str, Any], **kwargs: Any) -> Any:
    return instantiate(node, _convert_="all", **kwargs)


DATA_KEYS = ("split_seed",)  # ours: which seeded train/val/test split to cut (null: the run's seed)


def data_source(data: dict[str, Any]) -> Any:
    return make({k: v for k, v in data.items() if k not in DATA_KEYS})


def load_splits(data: dict[str, Any], seed: int) -> Any:
    """The dataset's splits: cut with `data.split_seed` (fixed by default, so runs with other
    seeds, and ensembles of them, are scored on the same validation and test images)."""
    split_seed = data.get("split_seed")
    return data_source(data).load(seed if split_seed is None else split_seed)


def normalizer(preprocess: dict[str, Any], x_train: torch.Tensor) -> Normalizer:
    return make(preprocess).fit(x_train)


def model(
    node: dict[str, Any], input_shape: Sequence[int], num_classes: int, init: dict[str, Any] | None = None
) -> nn.Module:
    net = make(node, input_shape=list(input_shape), num_classes=num_classes)
    return make(init)(net) if init else net


def num_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def optimizer(node: dict[str, Any], net: nn.Module, lr_scales: dict[int, float] | None = None) -> torch.optim.Optimizer:
    return build_optimizer(make({k: v for k, v in node.items() if k not in OPTIMIZER_KEYS}), net, lr_scales)


def is_full_batch(node: dict[str, Any]) -> bool:
    return bool(node.get("full_batch", False))


def scheduler(node: dict[str, Any], opt: torch.optim.Optimizer) -> tuple[Any, str]:
    """The scheduler and when to step it ("epoch" or "step")."""
    args = {k: v for k, v in node.items() if k not in SCHEDULER_KEYS}
    return make(args)(opt), node.get("interval", "epoch")


def augment(node: dict[str, Any]) -> nn.Module:
    return make(node)


DIAGNOSTICS_KEYS = ("enabled", "plots")


def diagnostics(node: dict[str, Any] | None, **kwargs: Any) -> Any:
    """The live-diagnostics callback, or None when `diagnostics.enabled` is false."""
    if not node or not node.get("enabled", True):
        return None
    return make({k: v for k, v in node.items() if k not in DIAGNOSTICS_KEYS}, **kwargs)


def model_from_checkpoint(directory: str) -> tuple[nn.Module, Normalizer, dict[str, Any]]:
    """Rebuilds the model a checkpoint describes and loads its weights (no pickled code)."""
    from components.engine.checkpoint import load_weights, read_meta
    from components.zoo.bundle import check_targets

    meta = read_meta(directory)
    check_targets(meta["config"]["model"], what=f"{directory}/meta.json")
    net = model(meta["config"]["model"], meta["input_shape"], len(meta["classes"]))
    load_weights(net, directory)
    return net.eval(), Normalizer.from_dict(meta["normalizer"]), meta


def early_stopping(node: dict[str, Any] | None) -> Any:
    """The `early_stopping` option: an EarlyStopping, or None (`none`)."""
    return make(node) if node and node.get("_target_") else None
