"""raysitter study NAME [overrides…]: runs `conf/study/NAME.yaml` (a Hydra app per study).

Each study file names its runner (`runner._target_`, a function in pipelines/runtime/studies.py),
so a new study is one YAML file plus, when needed, one function. Every training a study runs is
an arm: a run of its own, nested under the study's MLflow run, with the command that reproduces it.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pipelines.runtime import build, validate
from pipelines.runtime.app import CONF_DIR, hydra_app
from pipelines.runtime.errors import UserError, report_and_exit
from pipelines.runtime.studies import Arms
from pipelines.runtime.tracking import tracked_run


def studies() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "study").glob("*.yaml"))


def run_study(cfg: DictConfig, name: str) -> str:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    config = validate.resolve(cfg)
    validate.check_values(config)
    config["output_dir"] = validate.absolute(config["output_dir"])
    validate.check_tracking(config)
    overrides = list(HydraConfig.get().overrides.task)
    # what this machine decided, pinned in every arm's config (its command line leaves them to the machine)
    pins = [validate.pin("output_dir", config["output_dir"]), validate.pin("tracking.uri", config["tracking"]["uri"])]
    if (config.get("data") or {}).get("root"):
        validate.check_data(config)
        pins.append(validate.pin("data.root", config["data"]["root"]))
    tags = {"pipeline": "study", "study": name, "raysitter.kind": "study", "command": " ".join(["raysitter", "study", name, *overrides])}
    runner = build.make(config["runner"])
    check = getattr(getattr(runner, "func", runner), "check", None)
    if check is not None:  # the study's own keys, before its MLflow run opens
        check(config)
    run = config["tracking"].get("run_name") or f"study-{name}" + time.strftime("-%Y%m%d-%H%M%S")
    print(f"raysitter study {name}: {run}", flush=True)
    with tracked_run(config, run, tags) as tracker:
        tracker.log_config({k: v for k, v in config.items() if k != "runner"})
        summary = runner(config, tracker, Arms(name, tracker, dict(HydraConfig.get().runtime.choices), overrides, pins))
    print(summary)
    print(f"MLflow run   {tracker.run_id}  ({tracker.shown})", flush=True)
    return summary


def main(argv: list[str] | None = None, prog: str = "raysitter study") -> Any:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-") or args[0] not in studies():
        given = args[0] if args else "(none)"
        report_and_exit(UserError("study NAME", f"{given!r} is not a study.", f"use one of: {', '.join(studies())} (files in conf/study/)."))
    name, rest = args[0], args[1:]
    app = hydra_app(f"study/{name}")(lambda cfg: run_study(cfg, name))
    return app(rest, prog=f"{prog} {name}")


if __name__ == "__main__":
    main()
