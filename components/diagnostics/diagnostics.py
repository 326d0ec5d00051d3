"""Live diagnostics as training-loop callbacks: update/weight ratios, gradient norms and
activation statistics every N optimizer steps, plus the per-epoch history."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from components.engine.callbacks import Callback
from components.model.activations import Maxout

RELU_FAMILY = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU)
SATURATING = (nn.Sigmoid, nn.Tanh)
ACTIVATIONS = RELU_FAMILY + SATURATING + (Maxout,)

LogFn = Callable[[dict[str, float], int], None]


def activation_stats(out: torch.Tensor, module: nn.Module, saturation: float = 0.99) -> dict[str, float]:
    """mean and std of the activations; `dead`: the fraction of units (features or channels)
    that are ≤ 0 for every example and position in the batch (ReLU family); `saturated`: the
    fraction of activations in the flat tails (|tanh| > saturation; sigmoid outside
    [1-saturation, saturation])."""
    out = out.detach().float()
    stats = {"mean": float(out.mean()), "std": float(out.std())}
    if isinstance(module, RELU_FAMILY):
        per_unit = out.transpose(0, 1).reshape(out.shape[1], -1)  # units × (examples · positions)
        stats["dead"] = float((per_unit <= 0).all(dim=1).float().mean())
    if isinstance(module, nn.Tanh):
        stats["saturated"] = float((out.abs() > saturation).float().mean())
    elif isinstance(module, nn.Sigmoid):
        stats["saturated"] = float(((out > saturation) | (out < 1 - saturation)).float().mean())
    return stats


def update_ratio(before: torch.Tensor, after: torch.Tensor) -> float:
    """‖W_after − W_before‖ / ‖W_before‖: the size of this step (lr · update) relative to the weights."""
    return float((after - before).norm() / before.norm().clamp_min(1e-12))


class Diagnostics(Callback):
    """Every `every_n_steps` steps: `diag/update_ratio/<param>` (healthy near 1e-3),
    `diag/grad_norm/<param>`, and `diag/act/<layer>/{mean,std,dead,saturated}` for every activation
    module, passed to `log(metrics, step)`. Warns when the median ratio leaves `ratio_range`
    (two decades around 1e-3 by default: "far off"). Keeps what the end-of-run plots need."""

    def __init__(
        self,
        every_n_steps: int = 20,
        ratio_range: tuple[float, float] = (1e-5, 1e-1),
        saturation: float = 0.99,
        histogram_samples: int = 4096,
        log: LogFn | None = None,
        warn: Callable[[str], None] = print,
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be ≥ 1, got {every_n_steps}")
        self.every, self.ratio_range, self.saturation = every_n_steps, tuple(ratio_range), saturation
        self.histogram_samples, self.log, self.warn = histogram_samples, log, warn
        self.ratios: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.activations: dict[str, list[tuple[int, dict[str, float]]]] = defaultdict(list)
        self.histograms: dict[str, torch.Tensor] = {}
        self._before: dict[str, torch.Tensor] = {}
        self._pending: dict[str, float] = {}
        self._loop: Any = None
        self._warned: set[str] = set()

    def measuring(self, step: int) -> bool:
        return step == 1 or step % self.every == 0

    def on_fit_start(self, loop: Any) -> None:
        self._loop = loop
        for name, module in loop.module.named_modules():
            if isinstance(module, ACTIVATIONS):
                module.register_forward_hook(self._hook(name or type(module).__name__))

    def _hook(self, name: str) -> Callable[..., None]:
        def record(module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
            if not module.training or not self.measuring(self._loop.step + 1):
                return
            stats = activation_stats(out, module, self.saturation)
            self.activations[name].append((self._loop.step + 1, stats))
            self._pending.update({f"diag/act/{name}/{k}": v for k, v in stats.items()})
            flat = out.detach().flatten()
            pick = torch.randperm(flat.numel(), device=flat.device)[: self.histogram_samples]
            self.histograms[name] = flat[pick].float().cpu()

        return record

    def on_after_backward(self, loop: Any, step: int) -> None:
        if not self.measuring(step):
            return
        for name, p in loop.module.named_parameters():
            if p.requires_grad:
                self._before[name] = p.detach().clone()
                if p.grad is not None:
                    self._pending[f"diag/grad_norm/{name}"] = float(p.grad.norm())

    def on_step_end(self, loop: Any, step: int, loss: float | None) -> None:
        if not self.measuring(step) or not self._before:
            return
        for name, p in loop.module.named_parameters():
            if name in self._before:
                r = update_ratio(self._before[name], p.detach())
                self.ratios[name].append((step, r))
                self._pending[f"diag/update_ratio/{name}"] = r
        self._before.clear()
        if self.log is not None and self._pending:
            self.log(dict(self._pending), step)
        self._pending.clear()

    def on_epoch_end(self, loop: Any, epoch: int, metrics: dict[str, float]) -> None:
        """Warns (once per kind) when the median weight update ratio is far from 1e-3 or most
        units of a layer are dead."""
        low, high = self.ratio_range
        weights = [v[-1][1] for n, v in self.ratios.items() if v and not n.endswith("bias")]
        if weights:
            median = sorted(weights)[len(weights) // 2]
            if median > high:
                self._warn_once("ratio_high", f"median update/weight ratio {median:.2g} is far above 1e-3 (limit {high:g}): lower optimizer.lr")
            elif median < low:
                self._warn_once("ratio_low", f"median update/weight ratio {median:.2g} is far below 1e-3 (limit {low:g}): raise optimizer.lr")
        dead = {n: s[-1][1]["dead"] for n, s in self.activations.items() if s and "dead" in s[-1][1]}
        if dead and max(dead.values()) > 0.5:
            name = max(dead, key=dead.get)
            self._warn_once("dead", f"{dead[name]:.0%} of the units of layer {name} are dead (silent for a whole batch): lower the lr or use He init / leaky ReLU")

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            self.warn(f"  warning: {message}")


class History(Callback):
    """The per-epoch metrics, in order (what the end-of-run plots draw)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, loop: Any, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append(dict(metrics))
