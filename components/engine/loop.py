"""The per-worker training loop: `train_one_epoch` / `evaluate` / `TrainLoop.fit`.

Works with world size 1 and no Ray (tests, probes) and inside a Ray Train worker with DDP;
the only difference is the `model` handed in (DDP-wrapped or not) and whether
`torch.distributed` is initialised for reducing metrics.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
import time
from typing import Any

import torch
from torch import nn
import torch.distributed as dist
import torch.nn.functional as F

from components.data import Split
from components.engine.batches import batches, shard_indices
from components.engine.callbacks import Callback, CallbackList
from components.preprocess import Normalizer


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def _all_reduce_sum(values: list[torch.Tensor | float], device: torch.device) -> list[float]:
    """Sums per-worker totals (device scalars or numbers) over all workers (a no-op without
    torch.distributed): one stack, one all-reduce, one copy to the host."""
    t = torch.stack([torch.as_tensor(v, device=device).to(torch.float64) for v in values])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


@dataclass
class TrainLoop:
    """Everything one worker needs to train. `batch_size` is per worker (global / world size).

    `scheduler_interval` is "epoch" or "step": when the scheduler's `step()` is called.
    Every optimizer is stepped with a closure, so closure optimizers (L-BFGS) work unchanged.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    train: Split
    val: Split
    test: Split
    normalizer: Normalizer
    augment: nn.Module
    batch_size: int
    epochs: int
    device: torch.device
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    scheduler_interval: str = "epoch"
    callbacks: list[Callback] = field(default_factory=list)
    frozen: list[nn.Module] = field(default_factory=list)  # kept in eval mode (fine-tuning)
    classes: list[str] | None = None  # class names, for plots
    start_epoch: int = 1
    step: int = 0  # optimizer steps taken so far, over all epochs
    restarts: int = 0  # times this run resumed from a checkpoint (worker or node failures)
    # The GPU fast path (trainer=gpu); on a CPU device both are ignored, so results do not change.
    precision: str = "fp32"  # "bf16": forward and loss under bfloat16 autocast
    channels_last: bool = False  # NHWC input images (the model's weights are converted before DDP)
    early_stopping: Any = None  # components.early_stopping.EarlyStopping, or None
    stopped_at: int | None = None  # the epoch early stopping ended training at
    best: Any = None  # components.engine.best.BestEpoch: the best epoch's weights, kept

    def __post_init__(self) -> None:
        self.hooks = CallbackList(self.callbacks)
        # The underlying module (torch.compile keeps it in ._orig_mod, DDP in .module): evaluation
        # and checkpoints use it.
        inner = getattr(self.model, "_orig_mod", self.model)
        self.module = getattr(inner, "module", inner)
        self.epoch = self.start_epoch
        self.exported_weights = "trained"  # or what replaced them at the end (e.g. "ema")
        cuda = self.device.type == "cuda"
        self.autocast_dtype = torch.bfloat16 if cuda and self.precision == "bf16" else None
        self.memory_format = torch.channels_last if cuda and self.channels_last else None  # for the inputs
        # Device-resident data: each split is copied once (still uint8 where it was), then shuffled,
        # batched and augmented on the device; pinned host memory makes the copy asynchronous.
        self.train, self.val, self.test = (
            Split(self._to_device(s.x), self._to_device(s.y)) for s in (self.train, self.val, self.test)
        )

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda" and t.device.type == "cpu":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _inputs(self, xb: torch.Tensor) -> torch.Tensor:
        return xb.contiguous(memory_format=self.memory_format) if self.memory_format is not None and xb.dim() == 4 else xb

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        self.epoch = epoch
        self.model.train()
        for module in self.frozen:  # frozen layers keep their batch-norm statistics too
            module.eval()
        index = shard_indices(len(self.train), self.rank, self.world_size, shuffle_seed=self.seed * 100_003 + epoch)
        # Running sums stay on the device: no host synchronisation per step, one all-reduce per epoch.
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        count = 0
        start = time.perf_counter()
        for xb, yb in batches(self.train.x, self.train.y, index.to(self.device), self.batch_size):
            xb = self._inputs(self.normalizer(self.augment(to_float(xb))))
            outputs: dict[str, torch.Tensor] = {}

            def closure() -> torch.Tensor:
                self.optimizer.zero_grad(set_to_none=True)
                with self._autocast():
                    logits = self.model(xb)
                    loss = F.cross_entropy(logits, yb)
                loss.backward()
                self.hooks.on_after_backward(self, self.step + 1)
                outputs["logits"], outputs["loss"] = logits, loss
                return loss

            self.optimizer.step(closure)
            self.step += 1
            if self.scheduler is not None and self.scheduler_interval == "step":
                self.scheduler.step()
            with torch.no_grad():
                n = len(yb)
                total_loss.add_(outputs["loss"].detach().float(), alpha=n)
                correct.add_((outputs["logits"].argmax(1) == yb).sum())
                count += n
            self.hooks.on_step_end(self, self.step, None)
        loss_sum, correct_sum, n_sum = _all_reduce_sum([total_loss, correct, count], self.device)  # the epoch's one sync
        seconds = time.perf_counter() - start
        return {
            "train/loss": loss_sum / max(n_sum, 1),
            "train/acc": correct_sum / max(n_sum, 1),
            "train/images_per_s": n_sum / max(seconds, 1e-9),
            "train/epoch_s": seconds,
        }

    @torch.no_grad()
    def evaluate(self, split: Split, prefix: str, module: nn.Module | None = None, forward=None) -> dict[str, float]:
        """Loss and accuracy over `split` (sharded over workers, reduced). `module` evaluates
        another network (an averaged one); `forward` maps raw images in 0..1 to logits
        itself (an ensemble)."""
        module = module if module is not None else self.module
        module.eval()
        index = shard_indices(len(split), self.rank, self.world_size).to(self.device)
        total_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for xb, yb in batches(split.x, split.y, index, max(self.batch_size, 256)):
            with self._autocast():
                logits = forward(to_float(xb)) if forward is not None else module(self._inputs(self.normalizer(to_float(xb))))
            total_loss += F.cross_entropy(logits.float(), yb, reduction="sum")
            correct += (logits.argmax(1) == yb).sum()
        loss_sum, correct_sum, n_sum = _all_reduce_sum([total_loss, correct, len(index)], self.device)
        return {f"{prefix}/loss": loss_sum / max(n_sum, 1), f"{prefix}/acc": correct_sum / max(n_sum, 1)}

    def fit(self) -> dict[str, float]:
        """Trains until `epochs`, or until the training loss stops being finite: then the last
        metrics carry `diverged: 1.0` and training ends cleanly (no exception, no checkpoint)."""
        self.hooks.on_fit_start(self)
        metrics: dict[str, float] = {}
        for epoch in range(self.start_epoch, self.epochs + 1):
            lr = self.lr  # the lr this epoch trained with
            train = self.train_one_epoch(epoch)
            if not math.isfinite(train["train/loss"]):  # the val metrics keep the schema a sweep ranks by
                metrics = {"epoch": epoch, **train, **self.evaluate(self.val, "val"), "lr": lr, "diverged": 1.0}
                self.hooks.on_epoch_end(self, epoch, metrics)
                break
            metrics = {"epoch": epoch, **train, **self.evaluate(self.val, "val"), "lr": lr}
            metrics["gap/train_val_acc"] = metrics["train/acc"] - metrics["val/acc"]
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                self.scheduler.step()
            if self.early_stopping is not None and epoch < self.epochs and self.early_stopping.should_stop(epoch, metrics):
                self.stopped_at = epoch
                metrics["stopped_early"] = 1.0
            if self.best is not None:
                self.best.update(epoch, metrics, self.module)
            if self.is_last(epoch):
                metrics.update(self.evaluate(self.test, "test"))
                metrics.update(self.best_metrics(epoch, metrics))
            self.hooks.on_epoch_end(self, epoch, metrics)
            if self.stopped_at is not None:
                break
        self.hooks.on_fit_end(self, metrics)
        return metrics

    def best_metrics(self, epoch: int, metrics: dict[str, float]) -> dict[str, float]:
        """At the last epoch: the best epoch, its tracked metric and its weights' test metrics."""
        b = self.best
        if b is None or b.epoch is None:
            return {}
        if b.epoch == epoch:
            test = {k: metrics[k] for k in ("test/loss", "test/acc")}
        else:
            import copy

            module = copy.deepcopy(self.module)
            module.load_state_dict(b.state)
            test = self.evaluate(self.test, "test", module=module)
        return {"best/epoch": float(b.epoch), f"best/{b.metric}": b.value, **{f"best/{k}": v for k, v in test.items()}}

    def bundle_weights(self, epoch: int, metrics: dict[str, float]) -> tuple[dict[str, torch.Tensor], int, dict[str, float]]:
        """What the run's bundle holds at the last epoch: the best epoch's weights and metrics
        when they are wanted (`tracking.bundle_weights=best`) and no ensembling replaced the
        weights; else the weights as they are now."""
        b = self.best
        if b is None or not b.for_bundle or b.epoch is None or b.epoch == epoch or self.exported_weights != "trained":
            return self.module.state_dict(), epoch, metrics
        chosen = {**{k: v for k, v in b.metrics.items() if not k.startswith("test/")},
                  "test/loss": metrics["best/test/loss"], "test/acc": metrics["best/test/acc"]}
        return b.state, b.epoch, chosen

    def is_last(self, epoch: int) -> bool:
        """Whether `epoch` is the run's last: `epochs`, or where early stopping ended it."""
        return epoch == self.epochs or epoch == self.stopped_at

    def state_dict(self, epoch: int) -> dict:
        """What resuming needs besides the weights: tensors and plain containers only."""
        return {
            "epoch": epoch,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "torch_rng": torch.get_rng_state(),
            "restarts": self.restarts,
            "early_stopping": self.early_stopping.state_dict() if self.early_stopping is not None else None,
            "best": self.best.state_dict() if self.best is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.start_epoch, self.step = state["epoch"] + 1, state["step"]
        self.restarts = int(state.get("restarts", 0)) + 1  # this load is one more restart
        if self.early_stopping is not None and state.get("early_stopping"):
            self.early_stopping.load_state_dict(state["early_stopping"])
        if self.best is not None and state.get("best"):
            self.best.load_state_dict(state["best"])
