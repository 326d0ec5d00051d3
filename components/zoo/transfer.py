"""Transfer learning from a bundle (CS231n: re-initialise the head, freeze the convolutional
body, fine-tune what is trained with the learning rate × 0.1).

Strategies:
    head  re-initialised last layer trained alone; everything else frozen
    top   the fully connected layers trained (pretrained ones at lr × lr_scale, the new head
          at lr); the convolutional body frozen. An MLP has no convolutional body: all of its
          layers train.
    full  everything trained: pretrained layers at lr × lr_scale, the new head at lr
"""
from __future__ import annotations

from torch import nn
import torch

STRATEGIES = ("head", "top", "full")


def load_pretrained(model: nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Copies every pretrained tensor except the head's (the head keeps its fresh
    initialisation, sized for the new classes). Returns the names loaded."""
    own = model.state_dict()
    loaded = {k: v for k, v in weights.items() if not k.startswith("head.") and k in own}
    mismatched = [k for k, v in loaded.items() if own[k].shape != v.shape]
    if mismatched:
        raise ValueError(f"pretrained tensors do not fit this model: {', '.join(mismatched[:5])}")
    missing = [k for k in own if not k.startswith("head.") and k not in loaded]
    if missing:
        raise ValueError(f"the bundle lacks tensors this model needs: {', '.join(missing[:5])}")
    model.load_state_dict({**own, **loaded})
    return sorted(loaded)


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


def frozen_modules(model: nn.Module, strategy: str) -> list[nn.Module]:
    """The submodules `strategy` freezes (their parameters get requires_grad=False and they stay
    in eval mode, so batch-norm statistics are frozen too)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"finetune strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy == "full":
        return []
    if strategy == "head":
        return [m for name, m in model.named_children() if name != "head"]
    body = getattr(model, "body", None)  # top: the convolutional body, if there is one
    return [body] if body is not None and _has_conv(body) else []


def freeze(modules: list[nn.Module]) -> None:
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(False)
        module.eval()


def lr_scales(model: nn.Module, lr_scale: float) -> dict[int, float]:
    """id(parameter) → learning-rate multiplier: `lr_scale` for pretrained layers, 1 for the head."""
    head = {id(p) for p in model.head.parameters()}
    return {id(p): 1.0 if id(p) in head else lr_scale for p in model.parameters()}
