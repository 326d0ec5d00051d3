"""`raysitter train resume=NAME`: continue a run whose driver was interrupted (Ctrl-C, SIGTERM,
a lost head process) as the same MLflow run, from Ray Train's last checkpoint.

At its start every run saves what resuming needs (the resolved config, the MLflow run id, its
tags and group choices) beside Ray Train's run folder, `OUTPUT_DIR/ray_results/NAME/`. Ray Train
V2 restores a run given the same name and storage path: the workers get its latest checkpoint.
"""
from __future__ import annotations

from pathlib import Path
import re
from typing import Any

from pipelines.errors import UserError
from pipelines.sweep import read_state, write_state

STATE_FILE = "raysitter_run.json"
# What may change on resume: where it runs, how many failures it may survive.
RESUME_OVERRIDES = ("resume", "trainer.address", "trainer.max_failures")


def command(pipeline: str, name: str) -> str:
    """The command that resumes `name`, quoted for the shell and for Hydra's override grammar
    (run names may hold `=`, e.g. `…-lr=0.01-…`)."""
    if re.fullmatch(r"[\w.\-]+", name):
        return f"raysitter {pipeline} resume={name}"
    return f"raysitter {pipeline} 'resume=\"{name}\"'"


def runs_root(output_dir: str) -> Path:
    return Path(output_dir) / "ray_results"


def save(config: dict[str, Any], name: str, tags: dict[str, str], choices: dict[str, Any]) -> None:
    write_state(runs_root(config["output_dir"]) / name / STATE_FILE,
                {"name": name, "config": config, "tags": tags, "choices": choices})


def resumable(output_dir: str) -> list[str]:
    return sorted(p.parent.name for p in runs_root(output_dir).glob(f"*/{STATE_FILE}"))


def load(name: str, output_dir: str, overrides: list[str], current: dict[str, Any]) -> dict[str, Any]:
    """The saved state of run `name`, checked: the run exists, did not finish, and the command
    line changes nothing but where and how robustly it runs."""
    path = runs_root(output_dir) / name / STATE_FILE
    if not path.is_file():
        known = resumable(output_dir)
        raise UserError("resume", f"no run named {name!r} under {runs_root(output_dir)}.",
                        "pass the name raysitter printed at the run's start, e.g. "
                        f"{'; '.join(command('train', k) for k in known[-5:]) or '(no resumable run there yet)'}; "
                        "set RAYSITTER_OUTPUT_DIR (or output_dir=) to the folder that run used.")
    changed = [o for o in overrides if not o.lstrip("+~").split("=")[0].startswith(RESUME_OVERRIDES)]
    if changed:
        raise UserError("resume", f"continues {name!r} with the configuration it started with, but the command line also "
                        f"changes {' '.join(changed)}.",
                        f"leave those out (only {', '.join(RESUME_OVERRIDES[1:])} may change on resume), or start a new run with them.")
    state = read_state(path)
    config = state["config"]
    given = {o.lstrip("+~").split("=")[0] for o in overrides}
    for key in RESUME_OVERRIDES[1:]:  # what this command line sets (RAY_ADDRESS counts for the address)
        section, field = key.split(".")
        if key in given or (field == "address" and current[section].get(field)):
            config[section][field] = current[section][field]
    run_id = config["_run"]["run_id"]
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        status = MlflowClient(config["tracking"]["uri"]).get_run(run_id).info.status
    except MlflowException as e:
        raise UserError("resume", f"run {name!r} was tracked as MLflow run {run_id} in {config['tracking']['uri']}, "
                        f"which cannot be read ({str(e).splitlines()[0]}).",
                        "start the tracking server it used (or set tracking.uri back), or start a new run.") from None
    if status == "FINISHED":
        raise UserError("resume", f"run {name!r} (MLflow run {run_id}) finished already.",
                        "start a new run; to train a finished model further, push it to the zoo and use raysitter finetune.")
    return state
