"""The best epoch of a run by one metric (`tracking.best_metric`, `tracking.best_mode`): its
weights are kept (on the host) as training goes on, evaluated on the test split at the end, and
are the weights the run's bundle (and so the zoo) gets when `tracking.bundle_weights=best`.
Its state is part of every checkpoint, so a resumed run keeps its best epoch."""
from __future__ import annotations

import math
from typing import Any

import torch


class BestEpoch:
    def __init__(self, metric: str = "val/acc", mode: str = "max", for_bundle: bool = True) -> None:
        self.metric, self.mode, self.for_bundle = metric, mode, for_bundle
        self.epoch: int | None = None
        self.value: float | None = None
        self.metrics: dict[str, float] = {}
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int, metrics: dict[str, float], module: torch.nn.Module) -> None:
        value = float(metrics.get(self.metric, math.nan))
        if not math.isfinite(value):
            return
        if self.value is None or (value > self.value if self.mode == "max" else value < self.value):
            self.epoch, self.value, self.metrics = epoch, value, dict(metrics)
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "value": self.value, "metrics": self.metrics, "state": self.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.value = state.get("epoch"), state.get("value")
        self.metrics, self.state = dict(state.get("metrics") or {}), state.get("state")
