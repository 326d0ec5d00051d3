"""raysitter check: CS231n's preflight checks on the composed config, as one Ray task.

    raysitter check                        # the default model: everything should PASS
    raysitter check init=zeros             # symmetric weights: regularisation and overfit checks FAIL
    raysitter check init=large_random      # huge logits: the initial-loss check FAILs

Exit code 1 when a gating check fails (so `tune` and scripts can refuse to start a sweep).
"""
from __future__ import annotations

import logging
import sys
from typing import Any

from omegaconf import DictConfig
from rich.console import Console

from pipelines.runtime import validate
from pipelines.runtime.app import hydra_app
from pipelines.runtime.probes import gating_passed, log_results, print_table
from pipelines.runtime.tracking import tracked_run
from pipelines.runtime.training import hydra_tags, run_name


def check(cfg: DictConfig) -> dict[str, Any]:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    run = validate.prepare(cfg)
    config = run.config
    tags, choices = hydra_tags("check")
    name = run_name(config, choices, "check")
    print(f"raysitter check: {name}", flush=True)
    with tracked_run(config, name, tags) as tracker:
        tracker.log_config(config)
        from pipelines.runtime import ray_runner
        from pipelines.runtime.probes import run_probes_remote, unregularised

        plain = unregularised(validate.running_command()[0], run.overrides, config)
        ray_runner.init_ray(config["trainer"])
        cpus = float(config["trainer"]["resources_per_worker"].get("CPU", 1))
        report = run_probes_remote(config, plain, cpus)
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
