"""Preflight checks from CS231n's "babysitting the learning process", as plain functions.

Each returns a `CheckResult` with the measured number, the expected one and a hint. `gating`
checks stop a sweep; the learning-rate range test only advises.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

ModelFactory = Callable[[], nn.Module]
OptimizerFactory = Callable[[nn.Module, float | None], torch.optim.Optimizer]  # (model, lr override)


@dataclass
class CheckResult:
    key: str  # a short identifier: initial_loss, regularization, overfit_tiny, lr_range
    name: str
    status: str  # PASS, WARN or FAIL
    measured: str
    expected: str
    hint: str
    gating: bool = True
    values: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def l2_penalty(model: nn.Module) -> torch.Tensor:
    """½ Σ‖W‖² over the weights that weight decay applies to (matrices and kernels, not biases/norms)."""
    return 0.5 * sum((p.pow(2).sum() for p in model.parameters() if p.ndim >= 2), torch.tensor(0.0))


@torch.no_grad()
def initial_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, tolerance: float = 0.15) -> CheckResult:
    """With regularisation off, an untrained softmax classifier should be unsure: loss ≈ ln(C).
    PASS within `tolerance` (relative), WARN within twice that, FAIL beyond."""
    model.train()
    loss = float(_loss(model, x, y))
    expected = math.log(num_classes)
    off = abs(loss - expected) / expected if math.isfinite(loss) else math.inf
    status = "PASS" if off <= tolerance else "WARN" if off <= 2 * tolerance else "FAIL"
    return CheckResult(
        "initial_loss",
        "initial loss ≈ ln C",
        status,
        f"{loss:.3f}",
        f"{expected:.3f} ± {tolerance:.0%}",
        "ok" if status == "PASS" else "logits too large or small at init: check the weight scale (init=), input preprocessing and labels",
        values={"initial_loss": loss, "expected_initial_loss": expected},
    )


@torch.no_grad()
def regularization_raises_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, strength: float = 1e-2) -> CheckResult:
    """Adding an L2 penalty of `strength` must raise the loss; if it does not, the weights are
    all zero (nothing to penalise), e.g. a zero or constant init."""
    model.train()
    data_loss = float(_loss(model, x, y))
    penalty = float(strength * l2_penalty(model))
    status = "PASS" if penalty > 1e-4 * max(data_loss, 1.0) else "FAIL"
    return CheckResult(
        "regularization",
        "regularisation raises the loss",
        status,
        f"{data_loss:.3f} → {data_loss + penalty:.3f}",
        f"an increase at λ={strength:g}",
        "ok" if status == "PASS" else "the weights are (near) zero: break the symmetry with a random init (init=he or xavier)",
        values={"data_loss": data_loss, "regularised_loss": data_loss + penalty, "l2_penalty": penalty},
    )


def overfit_tiny(
    make_model: ModelFactory, make_optimizer: OptimizerFactory, x: torch.Tensor, y: torch.Tensor, max_steps: int = 300, target_loss: float = 0.05
) -> CheckResult:
    """Train on a tiny subset (e.g. 20 examples, no regularisation) full-batch: a model that
    works reaches training accuracy 1.0 and drives the loss toward 0 within `max_steps`."""
    model = make_model().train()
    opt = make_optimizer(model, None)
    first = loss_value = math.nan
    acc, steps = 0.0, 0
    for steps in range(1, max_steps + 1):

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = _loss(model, x, y)
            loss.backward()
            return loss

        loss_value = float(opt.step(closure).detach())
        first = loss_value if steps == 1 else first
        if not math.isfinite(loss_value):
            break
        if steps % 10 == 0 or steps == max_steps:
            with torch.no_grad():
                acc = float((model(x).argmax(1) == y).float().mean())
            if acc == 1.0 and loss_value < target_loss:
                break
    if acc == 1.0 and loss_value < target_loss:
        status, hint = "PASS", "ok"
    elif acc == 1.0:
        status, hint = "WARN", "fits the labels but the loss is still far from 0: the learning rate may be low"
    else:
        status, hint = "FAIL", "cannot fit 20 examples: check the learning rate, the init (symmetric weights?) and that labels match inputs"
    return CheckResult(
        "overfit_tiny",
        f"overfit {len(y)} examples",
        status,
        f"acc {acc:.2f}, loss {first:.3f} → {loss_value:.3g} in {steps} steps",
        f"acc 1.00, loss < {target_loss:g} within {max_steps} steps",
        hint,
        values={"overfit_acc": acc, "overfit_loss": loss_value, "overfit_steps": float(steps)},
    )


def lr_range_test(
    make_model: ModelFactory,
    make_optimizer: OptimizerFactory,
    x: torch.Tensor,
    y: torch.Tensor,
    lrs: np.ndarray,
    steps: int = 20,
    batch_size: int = 128,
    configured_lr: float | None = None,
    seed: int = 0,
) -> tuple[CheckResult, list[dict], tuple[float, float] | None]:
    """For each lr (log-spaced), train a fresh copy for `steps` mini-batch steps. The loss either
    barely moves (lr too small), falls, or explodes/goes NaN (too large). The suggested coarse
    search range spans the lrs where it falls, widened one grid step each way."""
    rows = []
    g = torch.Generator().manual_seed(seed)
    order = torch.randint(0, len(y), (steps, min(batch_size, len(y))), generator=g)
    for lr in lrs:
        torch.manual_seed(seed)
        model = make_model().train()
        opt = make_optimizer(model, float(lr))
        with torch.no_grad():
            initial = float(_loss(model, x, y))
        for i in range(steps):
            xb, yb = x[order[i]], y[order[i]]

            def closure() -> torch.Tensor:
                opt.zero_grad(set_to_none=True)
                loss = _loss(model, xb, yb)
                loss.backward()
                return loss

            opt.step(closure)
        with torch.no_grad():
            final = float(_loss(model, x, y))
        if not math.isfinite(final) or final > 1.5 * initial:
            verdict = "explodes"
        elif final > 0.95 * initial:
            verdict = "too small"
        else:
            verdict = "falls"
        rows.append({"lr": float(lr), "initial_loss": initial, "final_loss": final, "verdict": verdict})
    falling = [i for i, r in enumerate(rows) if r["verdict"] == "falls"]
    if not falling:
        result = CheckResult(
            "lr_range", "learning-rate range test", "FAIL", "the loss fell at no lr", f"a falling range within {lrs[0]:.0e}…{lrs[-1]:.0e}",
            "nothing learns in a few steps: check the model and data before searching", gating=False,
        )
        return result, rows, None
    lo = rows[max(falling[0] - 1, 0)]["lr"]
    hi = rows[min(falling[-1] + 1, len(rows) - 1)]["lr"]
    best = min(falling, key=lambda i: rows[i]["final_loss"])
    inside = configured_lr is None or lo <= configured_lr <= hi
    result = CheckResult(
        "lr_range",
        "learning-rate range test",
        "PASS" if inside else "WARN",
        f"falls for lr {rows[falling[0]]['lr']:.1e}…{rows[falling[-1]]['lr']:.1e} (best {rows[best]['lr']:.1e})",
        f"optimizer.lr={configured_lr:g} inside" if configured_lr is not None else "a falling range",
        f"search optimizer.lr loguniform({lo:.1e}, {hi:.1e}) with raysitter tune",
        gating=False,
        values={"lr_range_low": lo, "lr_range_high": hi, "lr_range_best": rows[best]["lr"]},
    )
    return result, rows, (lo, hi)
