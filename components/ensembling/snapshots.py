"""Snapshot ensembles (Huang et al. 2017): one run with a cyclic learning rate keeps the
weights at the end of every cycle and averages the snapshots' predictions."""
from __future__ import annotations

import copy
from typing import Any

from components.engine.callbacks import Callback


class SnapshotEnsemble(Callback):
    """Takes a snapshot whenever the learning rate turns from falling (or flat) to rising:
    the end of a cycle of `scheduler=cyclic` (per step) or `scheduler=cosine_restarts` (per
    epoch). The final weights are the last snapshot. Keeps the newest `keep`.

    At the last epoch evaluates the average of the snapshots' softmax on val and test:
    `snapshots/val/acc`, `snapshots/test/acc`, `snapshots/count`.
    """

    def __init__(self, keep: int = 5) -> None:
        if keep < 1:
            raise ValueError(f"keep must be ≥ 1, got {keep}")
        self.keep = keep
        self.snapshots: list[dict] = []
        self.previous_lr: float | None = None
        self.falling = False  # the direction of the last change of the learning rate

    def _observe(self, loop: Any) -> None:
        lr = loop.lr  # the lr the next step will use
        if self.previous_lr is not None:
            if lr > self.previous_lr * (1 + 1e-9):
                if self.falling and (not self.snapshots or self.snapshots[-1]["step"] != loop.step):
                    self.snapshots.append({"step": loop.step, "state": copy.deepcopy(loop.module.state_dict())})
                    self.snapshots = self.snapshots[-self.keep :]
                self.falling = False
            elif lr < self.previous_lr * (1 - 1e-9):
                self.falling = True
        self.previous_lr = lr

    def on_step_end(self, loop: Any, step: int, loss: float | None) -> None:
        self._observe(loop)

    def on_epoch_end(self, loop: Any, epoch: int, metrics: dict[str, float]) -> None:
        if not loop.is_last(epoch):
            self._observe(loop)
            return
        if metrics.get("diverged"):
            return
        from components.ensembling.predict import EnsembleForward

        earlier = [s["state"] for s in self.snapshots if s["step"] != loop.step]
        states = earlier[-(self.keep - 1) :] if self.keep > 1 else []
        members = []
        for state in states:
            member = copy.deepcopy(loop.module)
            member.load_state_dict(state)
            members.append(member.eval())
        members.append(loop.module.eval())  # the final weights: the end of the last cycle
        forward = EnsembleForward(members, [loop.normalizer] * len(members))
        for split, name in ((loop.val, "val"), (loop.test, "test")):
            for key, value in loop.evaluate(split, name, forward=forward).items():
                metrics[f"snapshots/{key}"] = value
        metrics["snapshots/count"] = float(len(members))
        metrics["snapshots/gain_test_acc"] = metrics["snapshots/test/acc"] - metrics.get("test/acc", float("nan"))
