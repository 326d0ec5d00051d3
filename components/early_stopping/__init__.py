"""Early stopping on a plateau (`conf/early_stopping`): training ends once `metric` has not
improved by more than `min_delta` for `patience` epochs. The loop then treats that epoch as the
last: it evaluates the test split, the run logs its bundle and final plots, and the metrics say
`stopped_early: 1.0`. The decision reads metrics already reduced over all workers, so every
worker stops at the same epoch; its state is part of each checkpoint (resuming keeps counting)."""
from __future__ import annotations

import math
from typing import Any

METRICS = ("val/loss", "val/acc", "train/loss", "train/acc", "gap/train_val_acc")


class EarlyStopping:
    def __init__(self, metric: str = "val/loss", mode: str = "min", patience: int = 5, min_delta: float = 0.0) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)} (got {metric!r})")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be min or max (got {mode!r})")
        if int(patience) < 1 or min_delta < 0:
            raise ValueError(f"patience must be ≥ 1 and min_delta ≥ 0 (got {patience}, {min_delta})")
        self.metric, self.mode, self.patience, self.min_delta = metric, mode, int(patience), float(min_delta)
        self.best: float | None = None
        self.best_epoch = 0
        self.stale = 0  # epochs since the last improvement

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def should_stop(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Records this epoch's `metric`; True once it has not improved for `patience` epochs."""
        value = float(metrics[self.metric])
        if math.isfinite(value) and self.improved(value):
            self.best, self.best_epoch, self.stale = value, epoch, 0
            return False
        self.stale += 1
        return self.stale >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "stale": self.stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.stale = state.get("best"), int(state.get("best_epoch", 0)), int(state.get("stale", 0))
