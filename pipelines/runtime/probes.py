"""Builds what the preflight checks need from a plain config and runs them (in-process, or as
a Ray task from `raysitter check` and `raysitter tune`'s preflight), and shows and logs their
results."""
from __future__ import annotations

from pathlib import Path
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.table import Table
import torch

from components.diagnostics import initial_loss, lr_range_test, overfit_tiny, regularization_raises_loss
from pipelines.runtime import build

if TYPE_CHECKING:
    from rich.console import Console

    from pipelines.runtime.tracking import RunTracker


def _default_check() -> dict[str, Any]:
    from omegaconf import OmegaConf

    from pipelines.runtime.app import CONF_DIR

    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "check.yaml"))["check"]


DEFAULT_CHECK = _default_check()  # conf/check.yaml's thresholds, for callers whose config has none (tune)

# Model options that regularise; the checks switch them off ("regularisation off").
REGULARISERS = {"dropout": 0.0, "drop_connect": 0.0, "stochastic_depth": 0.0}


def regularisation_off(config: dict[str, Any]) -> list[str]:
    """The overrides that switch the model's regularisers and weight decay off."""
    off = [f"model.{key}={value}" for key, value in REGULARISERS.items() if key in config["model"]]
    return off + (["optimizer.weight_decay=0.0"] if "weight_decay" in config["optimizer"] else [])


def unregularised(config_name: str, overrides: list[str], config: dict[str, Any]) -> dict[str, Any]:
    """The run's config with regularisation off, composed from its overrides plus those that
    switch it off (interpolations of the switched keys follow)."""
    from pipelines.runtime.validate import compose_run

    return compose_run(config_name, [*overrides, *regularisation_off(config)])


def probe_configs(config_name: str, overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, its unregularised twin) for a command line: what `run_probes` takes."""
    from pipelines.runtime.validate import compose_run

    config = compose_run(config_name, overrides)
    return config, unregularised(config_name, overrides, config)


PROBES = ("initial loss", "regularisation raises the loss", "overfit a tiny subset", "learning-rate range test")


def run_probes(config: dict[str, Any], plain: dict[str, Any], range_test: bool = True) -> dict[str, Any]:
    """All checks on `config` and `plain`, its regularisation-free twin (`unregularised`); the
    lr range test only when `range_test`. Returns plain data (check results, range-test rows,
    suggestion)."""
    *_, (_, report) = probe_steps(config, plain, range_test)
    return report


def probe_steps(config: dict[str, Any], plain: dict[str, Any], range_test: bool = True) -> Any:
    """`run_probes` step by step: yields ("start", name of the probe) before each probe and
    ("report", the report) at the end; as a streaming Ray task, the driver draws the progress."""
    c, seed = config.get("check") or DEFAULT_CHECK, config["seed"]
    torch.set_num_threads(max(1, int(config["trainer"]["resources_per_worker"].get("CPU", 1))))
    splits = build.load_splits(config["data"], seed)
    train = splits.train.sample()  # images read from files: a seeded subset, read once
    images = train.as_float()
    normalizer = build.normalizer(config["preprocess"], images)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    x_all, y_all = normalizer(images[pick]), train.y[pick]
    x, y = x_all[: c["examples"]], y_all[: c["examples"]]

    def make_model(node: dict = plain) -> torch.nn.Module:
        torch.manual_seed(seed)
        return build.model(node["model"], splits.input_shape, splits.num_classes, node.get("init"))

    def make_optimizer(model: torch.nn.Module, lr: float | None) -> torch.optim.Optimizer:
        node = dict(plain["optimizer"])
        if lr is not None:
            node["lr"] = lr
        return build.optimizer(node, model)

    yield "start", PROBES[0]
    results = [initial_loss(make_model(), x, y, splits.num_classes, c["initial_loss_tolerance"])]
    yield "start", PROBES[1]
    results.append(regularization_raises_loss(make_model(), x, y, c["regularization_strength"]))
    yield "start", PROBES[2]
    results.append(overfit_tiny(make_model, make_optimizer, x[: c["overfit_examples"]], y[: c["overfit_examples"]], c["overfit_steps"], c["overfit_target_loss"]))
    if not range_test:
        yield "report", {"results": [res.to_dict() for res in results], "lr_rows": [], "suggested": None, "num_classes": splits.num_classes}
        return
    yield "start", PROBES[3]
    r = c["lr_range"]
    lrs = np.logspace(np.log10(r["low"]), np.log10(r["high"]), r["points"])
    range_result, rows, suggested = lr_range_test(
        make_model, make_optimizer, x, y, lrs, r["steps"], config["trainer"]["batch_size"], config["optimizer"].get("lr"), seed
    )
    results.append(range_result)
    yield "report", {"results": [res.to_dict() for res in results], "lr_rows": rows, "suggested": suggested, "num_classes": splits.num_classes}


def run_probes_remote(config: dict[str, Any], plain: dict[str, Any], cpus: float, range_test: bool = True, print_fn: Any = print) -> dict[str, Any]:
    """The probes as a streaming Ray task: each probe's start is printed here, on the driver,
    as the task reaches it ("check 2/4: regularisation raises the loss …")."""
    import ray

    total = len(PROBES) if range_test else len(PROBES) - 1
    report, started = None, 0
    for ref in ray.remote(num_cpus=cpus, num_returns="streaming")(probe_steps).remote(config, plain, range_test):
        kind, value = ray.get(ref)
        if kind == "start":
            started += 1
            print_fn(f"check {started}/{total}: {value} …", flush=True)
        else:
            report = value
    return report


COLOURS = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}


def print_table(results: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="raysitter check", show_lines=False)
    for column in ("check", "status", "measured", "expected", "hint"):
        table.add_column(column, overflow="fold")
    for r in results:
        status = r["status"] + ("" if r["gating"] else " (advisory)")
        table.add_row(r["name"], f"[{COLOURS[r['status']]}]{status}[/]", r["measured"], r["expected"], r["hint"])
    console.print(table)


def log_results(tracker: RunTracker, report: dict[str, Any]) -> None:
    from components.diagnostics import plots

    client, run_id = tracker.client, tracker.run_id
    for r in report["results"]:
        client.set_tag(run_id, f"check.{r['key']}", r["status"])
        for key, value in r["values"].items():
            client.log_metric(run_id, f"check/{key}", float(value))
    client.set_tag(run_id, "raysitter.kind", "check")
    client.set_tag(run_id, "check.passed", str(gating_passed(report["results"])).lower())
    client.log_dict(run_id, report, "check_results.json")
    with tempfile.TemporaryDirectory() as tmp:
        path = plots.lr_range(report["lr_rows"], report["suggested"], Path(tmp) / "lr_range_test.png")
        client.log_artifact(run_id, str(path), "plots")


def gating_passed(results: list[dict[str, Any]]) -> bool:
    return not any(r["gating"] and r["status"] == "FAIL" for r in results)
