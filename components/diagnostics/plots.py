"""The end-of-run plots (matplotlib, headless): each function writes one PNG and returns its path."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def loss_curves(epochs: Sequence[dict[str, float]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [m["epoch"] for m in epochs]
    for key in ("train/loss", "val/loss"):
        ax.plot(x, [m.get(key, math.nan) for m in epochs], marker="o", label=key)
    ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax.legend()
    return _save(fig, path)


def accuracy_curves(epochs: Sequence[dict[str, float]], path: Path) -> Path:
    """Train and val accuracy with the gap between them shaded (a large gap: overfitting)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [m["epoch"] for m in epochs]
    train = [m.get("train/acc", math.nan) for m in epochs]
    val = [m.get("val/acc", math.nan) for m in epochs]
    ax.plot(x, train, marker="o", label="train/acc")
    ax.plot(x, val, marker="o", label="val/acc")
    ax.fill_between(x, val, train, alpha=0.2, label="train − val gap")
    ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy and train/val gap")
    ax.legend()
    return _save(fig, path)


def update_ratios(ratios: dict[str, list[tuple[int, float]]], path: Path) -> Path:
    """One line per weight tensor on a log axis, with the healthy 1e-3 marked."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in ratios.items():
        if points and not name.endswith("bias"):
            steps, values = zip(*points)
            ax.plot(steps, [max(v, 1e-12) for v in values], label=name, linewidth=1)
    ax.axhline(1e-3, color="k", linestyle="--", linewidth=1, label="1e-3 (healthy)")
    ax.set_yscale("log")
    ax.set(xlabel="optimizer step", ylabel="‖ΔW‖ / ‖W‖", title="update / weight ratio per layer")
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def activation_histograms(histograms: dict[str, torch.Tensor], path: Path, title: str = "activations per layer") -> Path:
    n = max(len(histograms), 1)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False)
    for ax, (name, values) in zip(axes.flat, histograms.items()):
        ax.hist(values.numpy(), bins=50)
        ax.set_title(f"{name}\nmean {float(values.mean()):.2f} std {float(values.std()):.2f}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(histograms):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def lr_range(rows: Sequence[dict[str, float | str]], suggested: tuple[float, float] | None, path: Path) -> Path:
    """Loss after a few steps against lr (log axis), coloured by verdict; the suggested range shaded."""
    colours = {"too small": "tab:gray", "falls": "tab:green", "explodes": "tab:red"}
    fig, ax = plt.subplots(figsize=(6, 4))
    for verdict, colour in colours.items():
        pts = [(r["lr"], r["final_loss"] if math.isfinite(float(r["final_loss"])) else float("nan")) for r in rows if r["verdict"] == verdict]
        if pts:
            ax.scatter(*zip(*pts), color=colour, label=verdict)
    finite = [float(r["final_loss"]) for r in rows if math.isfinite(float(r["final_loss"]))]
    if finite:
        ax.axhline(float(rows[0]["initial_loss"]), color="k", linestyle=":", linewidth=1, label="initial loss")
    if suggested:
        ax.axvspan(*suggested, color="tab:green", alpha=0.1, label="suggested search range")
    ax.set_xscale("log")
    ax.set(xlabel="learning rate", ylabel="loss after the test's steps", title="learning-rate range test")
    ax.legend(fontsize=7)
    return _save(fig, path)


def init_study(results: dict[str, list[dict]], path: Path) -> Path:
    """One row per case: per-layer std (left) and the activation histograms of layers 1..L."""
    cases = list(results)
    depth = len(next(iter(results.values())))
    fig, axes = plt.subplots(len(cases), depth + 1, figsize=(1.5 * (depth + 1), 1.6 * len(cases)), squeeze=False)
    for row, case in zip(axes, cases):
        layers = results[case]
        row[0].plot([r["layer"] for r in layers], [r["std"] for r in layers], marker="o", markersize=3)
        row[0].set_title(f"{case}: std", fontsize=7)
        row[0].set_ylim(bottom=0)
        row[0].tick_params(labelsize=5)
        for ax, r in zip(row[1:], layers):
            ax.hist(r["values"].numpy(), bins=40)
            ax.set_title(f"L{r['layer']} μ={r['mean']:.2f} σ={r['std']:.2g}", fontsize=5)
            ax.tick_params(labelsize=4)
            ax.set_yticks([])
    fig.suptitle("activations per layer (10 × 500 MLP on N(0,1) inputs)", fontsize=9)
    return _save(fig, path)


def metric_vs_param(trials: Sequence[dict], param: str, metric: str, path: Path, log: bool = True, group: str = "stage") -> Path:
    """The metric of every trial against one hyperparameter, one colour per `group` value."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for value in sorted({t[group] for t in trials}):
        pts = [(t[param], t[metric]) for t in trials if t[group] == value and isinstance(t.get(metric), (int, float))]
        if pts:
            ax.scatter(*zip(*pts), label=f"{group} {value}", alpha=0.8)
    if log:
        ax.set_xscale("log")
    ax.set(xlabel=param, ylabel=metric, title=f"{metric} vs {param}")
    ax.legend()
    return _save(fig, path)


def param_scatter(trials: Sequence[dict], x: str, y: str, metric: str, path: Path) -> Path:
    """Two hyperparameters against each other (log axes), coloured by the metric."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    pts = [t for t in trials if isinstance(t.get(metric), (int, float)) and math.isfinite(t[metric])]
    markers = {1: "o", 2: "s", 3: "^"}
    sc = None
    for stage in sorted({t["stage"] for t in pts}):
        group = [t for t in pts if t["stage"] == stage]
        sc = ax.scatter([t[x] for t in group], [t[y] for t in group], c=[t[metric] for t in group], cmap="viridis",
                        vmin=min(t[metric] for t in pts), vmax=max(t[metric] for t in pts), marker=markers.get(stage, "o"), label=f"stage {stage}")
    if sc is not None:
        fig.colorbar(sc, ax=ax, label=metric)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel=x, ylabel=y, title=f"{x} vs {y}, coloured by {metric}")
    ax.legend()
    return _save(fig, path)


def bars(groups: dict[str, Sequence[float]], ylabel: str, path: Path, title: str = "") -> Path:
    """One bar per group (the mean) with every value as a dot and the std as an error bar."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(groups)
    means = [float(np.mean(groups[n])) for n in names]
    stds = [float(np.std(groups[n])) for n in names]
    ax.bar(names, means, yerr=stds, capsize=4, color="#8fb3d9")
    for i, name in enumerate(names):
        ax.scatter([i] * len(groups[name]), groups[name], color="black", s=12, zorder=3)
    for i, (m, sd) in enumerate(zip(means, stds)):
        ax.text(i, m + sd + 0.015, f"{m:.3f}", ha="center", va="bottom")
    ax.set(ylabel=ylabel, title=title, ylim=(0, 1.05))
    return _save(fig, path)


def confusion_matrix(matrix: torch.Tensor, classes: Sequence[str], path: Path, title: str = "confusion matrix (test split)") -> Path:
    """Rows: true class, columns: predicted; each cell the count, coloured by the row's fraction."""
    counts = matrix.to(torch.float64)
    rows = counts.sum(1, keepdim=True).clamp_min(1)
    size = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow((counts / rows).numpy(), cmap="Blues", vmin=0, vmax=1)
    if len(classes) <= 20:
        for i in range(len(classes)):
            for j in range(len(classes)):
                value = int(counts[i, j])
                if value:
                    ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                            color="white" if counts[i, j] / rows[i, 0] > 0.5 else "black")
        ax.set_xticks(range(len(classes)), classes, fontsize=7, rotation=90 if max(map(len, classes)) > 3 else 0)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    accuracy = float(counts.diag().sum() / counts.sum().clamp_min(1))
    ax.set(xlabel="predicted", ylabel="true", title=f"{title}: acc {accuracy:.3f}")
    return _save(fig, path)


def augmented_samples(original: torch.Tensor, augmented: list[torch.Tensor], labels: Sequence[str], path: Path) -> Path:
    """Training images (top row) and `len(augmented)` augmented draws of each (rows below), as
    one tiled image (one axes: a grid of 32 axes took ≈ 1 s to draw, as long as all the other
    plots of a run together)."""
    n, channels, h, w = original.shape
    rows, pad = 1 + len(augmented), 2
    grid = torch.ones(rows * (h + pad) - pad, n * (w + pad) - pad, 3)  # white between tiles
    for i, batch in enumerate([original, *augmented]):
        for j in range(n):
            img = batch[j].detach().float().clamp(0, 1).cpu()
            img = img.expand(3, h, w) if channels == 1 else img[:3]
            grid[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = img.permute(1, 2, 0)
    fig, ax = plt.subplots(figsize=(1.1 * n, 1.15 * rows))
    ax.imshow(grid.numpy(), interpolation="nearest", vmin=0, vmax=1)
    ax.set_xticks([j * (w + pad) + w / 2 for j in range(n)], [str(label) for label in labels[:n]], fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([i * (h + pad) + h / 2 for i in range(rows)], ["original", *(f"draw {i}" for i in range(1, rows))], fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.suptitle("training images and their augmentations (what the model sees, before normalisation)", fontsize=8)
    return _save(fig, path)
