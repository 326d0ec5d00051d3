"""Averaging predicted probabilities over models."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from components.data import Split


class EnsembleForward:
    """x → log of the mean of the members' softmax probabilities. Behaves like logits
    (argmax = the ensemble's prediction; cross-entropy on it = the ensemble's NLL).
    `normalizers[i]` preprocesses member i's input (members may come from different runs)."""

    def __init__(self, members: Sequence[nn.Module], normalizers: Sequence[Callable[[torch.Tensor], torch.Tensor]] | None = None) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)
        self.normalizers = list(normalizers) if normalizers is not None else [lambda x: x] * len(self.members)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        probs = sum(F.softmax(m(n(x)), dim=1) for m, n in zip(self.members, self.normalizers))
        return torch.log(probs / len(self.members))


@torch.no_grad()
def evaluate_forward(forward: Callable[[torch.Tensor], torch.Tensor], split: Split, batch_size: int = 512) -> dict[str, float]:
    """Accuracy and mean cross-entropy of `forward` (raw images in 0..1 → logits) on `split`."""
    from components.engine.loop import to_float

    loss = correct = 0.0
    for start in range(0, len(split), batch_size):
        x, y = to_float(split.x[start : start + batch_size]), split.y[start : start + batch_size]
        logits = forward(x)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += float((logits.argmax(1) == y).sum())
    n = max(len(split), 1)
    return {"loss": loss / n, "acc": correct / n}
