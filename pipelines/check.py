"""raysitter check: CS231n's preflight checks on the composed config, as one Ray task.

    raysitter check                        # the default model: everything should PASS
    raysitter check init=zeros             # symmetric weights: regularisation and overfit checks FAIL
    raysitter check init=large_random      # huge logits: the initial-loss check FAILs

Exit code 1 when a gating check fails (so `tune` and scripts can refuse to start a sweep).
"""
from __future__ import annotations

import logging
from pathlib import Path
import sys
import tempfile
from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from pipelines import validate
from pipelines.app import hydra_app
from pipelines.tracking import RunTracker, tracked_run
from pipelines.train import hydra_tags, run_name

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
    from components.checks import plots

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


def check(cfg: DictConfig) -> dict[str, Any]:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    config, _ = validate.prepare(cfg)
    tags, choices = hydra_tags("check")
    name = run_name(config, choices, "check")
    print(f"raysitter check: {name}", flush=True)
    with tracked_run(config, name, tags) as tracker:
        tracker.log_config(config)
        import ray

        from pipelines import ray_runner
        from pipelines.probes import run_probes

        ray_runner.init_ray(config["trainer"])
        cpus = float(config["trainer"]["resources_per_worker"].get("CPU", 1))
        report = ray.get(ray.remote(num_cpus=cpus)(run_probes).remote(config))
        log_results(tracker, report)
    console = Console(width=None if sys.stdout.isatty() else 150)
    print_table(report["results"], console)
    console.print(f"MLflow run   {tracker.run_id}  ({tracker.shown})")
    return report


@hydra_app("check")
def main(cfg: DictConfig) -> None:
    report = check(cfg)
    if not gating_passed(report["results"]):
        print("raysitter check: a gating check FAILED (see the hints above)", file=sys.stderr, flush=True)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
