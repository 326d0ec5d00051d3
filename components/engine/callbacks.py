"""Hooks on the training loop: cross-cutting work (logging, progress, checkpoints, probes)
hangs here rather than inline in the step."""
from __future__ import annotations

from typing import Any


class Callback:
    """Override what you need. `metrics` are already reduced over all workers."""

    def on_fit_start(self, loop: Any) -> None: ...

    def on_after_backward(self, loop: Any, step: int) -> None:
        """Gradients are fresh and the weights not yet updated (inside the optimizer's closure;
        L-BFGS calls it several times per step)."""

    def on_step_end(self, loop: Any, step: int, loss: float | None) -> None: ...

    def on_epoch_end(self, loop: Any, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_fit_end(self, loop: Any, metrics: dict[str, float]) -> None: ...


class CallbackList(Callback):
    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = callbacks

    def on_fit_start(self, loop: Any) -> None:
        for cb in self.callbacks:
            cb.on_fit_start(loop)

    def on_after_backward(self, loop: Any, step: int) -> None:
        for cb in self.callbacks:
            cb.on_after_backward(loop, step)

    def on_step_end(self, loop: Any, step: int, loss: float | None) -> None:
        for cb in self.callbacks:
            cb.on_step_end(loop, step, loss)

    def on_epoch_end(self, loop: Any, epoch: int, metrics: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(loop, epoch, metrics)

    def on_fit_end(self, loop: Any, metrics: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_fit_end(loop, metrics)


class ProgressPrinter(Callback):
    """One line per epoch: epoch, losses, accuracies, lr and images/s."""

    def __init__(self, epochs: int, print_fn=print, label: str = "") -> None:
        self.epochs, self.print = epochs, print_fn
        self.label = f"{label}  " if label else ""  # e.g. the trial in a sweep

    def on_epoch_end(self, loop: Any, epoch: int, m: dict[str, float]) -> None:
        if m.get("diverged"):
            self.print(f"{self.label}epoch {epoch:>3}/{self.epochs}  DIVERGED: train/loss is {m['train/loss']} — stopping", flush=True)
            return
        self.print(
            f"{self.label}epoch {epoch:>3}/{self.epochs}  "
            f"train/loss {m['train/loss']:.4f}  train/acc {m['train/acc']:.4f}  "
            f"val/loss {m['val/loss']:.4f}  val/acc {m['val/acc']:.4f}  "
            f"lr {m['lr']:.3g}  {m['train/images_per_s']:,.0f} img/s",
            flush=True,
        )
