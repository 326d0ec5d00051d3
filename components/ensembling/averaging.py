"""Polyak and EMA averages of the weights during training (`torch.optim.swa_utils`)."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, update_bn

from components.engine.batches import batches
from components.engine.callbacks import Callback
from components.engine.loop import to_float


def warmed_up_ema(decay: float) -> Any:
    """AveragedModel's `multi_avg_fn`: one lerp over all parameters per step (one host read of
    the update count, not one per parameter)."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(averaged, current, 1.0 - d)

    return update


class WeightAveraging(Callback):
    """Keeps an average of the weights after every optimizer step.

    mode `ema`: exponential moving average from the first step, its decay warmed up as
    min(`decay`, (1 + n) / (10 + n)) after n updates (a plain 0.999 over a 200-step run would keep
    82 % of the initial random weights).
    mode `polyak`: the plain running mean (Polyak-Ruppert) of every step from `start` (a
    fraction of the training epochs, e.g. 0.5 = the second half).

    At the last epoch the batch-norm statistics of the averaged model are recomputed on the
    training split, and it is evaluated on val and test (metrics `MODE/val/acc`, `MODE/test/acc`,
    …). With `export` the averaged weights then replace the trained ones, so the checkpoint, the
    bundle and the logged model are the averaged network.
    """

    def __init__(self, mode: str = "ema", decay: float = 0.999, start: float = 0.0, export: bool = True) -> None:
        if mode not in ("ema", "polyak"):
            raise ValueError(f"averaging mode must be ema or polyak, got {mode!r}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        if not 0.0 <= start < 1.0:
            raise ValueError(f"start must be a fraction of training in [0, 1), got {start}")
        self.mode, self.decay, self.start, self.export = mode, decay, start, export
        self.averaged: AveragedModel | None = None

    def on_fit_start(self, loop: Any) -> None:
        fn = warmed_up_ema(self.decay) if self.mode == "ema" else None
        self.averaged = AveragedModel(loop.module, multi_avg_fn=fn, use_buffers=False)
        self.first_epoch = 1 + int(self.start * loop.epochs)

    def on_step_end(self, loop: Any, step: int, loss: float | None) -> None:
        if self.averaged is not None and self._epoch(loop) >= self.first_epoch:
            self.averaged.update_parameters(loop.module)

    @staticmethod
    def _epoch(loop: Any) -> int:
        return getattr(loop, "epoch", loop.start_epoch)

    def on_epoch_end(self, loop: Any, epoch: int, metrics: dict[str, float]) -> None:
        if not loop.is_last(epoch) or metrics.get("diverged") or self.averaged is None:
            return
        model = self.averaged.module
        # Batch-norm running statistics: recomputed for the averaged weights (every rank uses
        # the whole training split, so every rank's averaged model is the same).
        inputs = (loop.normalizer(to_float(x))
                  for x, _ in batches(loop.train.x, loop.train.y, torch.arange(len(loop.train), device=loop.device), max(loop.batch_size, 256)))
        update_bn(inputs, model, device=loop.device)
        for split, name in ((loop.val, "val"), (loop.test, "test")):
            for key, value in loop.evaluate(split, name, module=model).items():
                metrics[f"{self.mode}/{key}"] = value
        metrics[f"{self.mode}/gain_test_acc"] = metrics[f"{self.mode}/test/acc"] - metrics.get("test/acc", float("nan"))
        if self.export:
            loop.module.load_state_dict(copy.deepcopy(model.state_dict()))
            loop.exported_weights = self.mode
