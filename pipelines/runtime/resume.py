"""`raysitter train resume=NAME`: continue a run whose driver was interrupted (Ctrl-C, SIGTERM,
a lost head process) as the same MLflow run, from Ray Train's last checkpoint.

Ray Train's storage for a run is keyed by its name plus 8 random hex digits
(`OUTPUT_DIR/ray_results/NAME-1a2b3c4d/`), so two runs given one `tracking.run_name` never share
checkpoints: a new run always trains from scratch, and only `resume=` continues one. At its start
every run saves what resuming needs (the resolved config, the MLflow run id, its tags and group
choices) in that folder. Ray Train V2 restores a run given the same name and storage path: the
workers get its latest checkpoint. `resume=` takes that key, or the run name when one
unfinished run has it.
"""
from __future__ import annotations

from pathlib import Path
import re
from typing import Any

from pipelines.runtime.context import RunContext, ZooSource
from pipelines.runtime.errors import UserError
from pipelines.runtime.sweep import read_state, write_state

STATE_FILE = "raysitter_run.json"
# What may change on resume: where its folder is, where it runs, how many failures it may survive.
RESUME_OVERRIDES = ("resume", "output_dir", "trainer.address", "trainer.max_failures")


def command(pipeline: str, name: str) -> str:
    """The command that resumes `name`, quoted for the shell and for Hydra's override grammar
    (run names may hold `=`, e.g. `…-lr=0.01-…`)."""
    if re.fullmatch(r"[\w.\-]+", name):
        return f"raysitter {pipeline} resume={name}"
    return f"raysitter {pipeline} 'resume=\"{name}\"'"


def runs_root(output_dir: str) -> Path:
    return Path(output_dir) / "ray_results"


def new_storage_key(output_dir: str, name: str) -> str:
    """Ray Train's run name (its storage folder) for a new run called `name`: the name and 8
    random hex digits, never a key in use (the MLflow run is not open yet when it is chosen:
    it opens beside the fit's start)."""
    import secrets

    while True:
        key = f"{name}-{secrets.token_hex(4)}"
        if not (runs_root(output_dir) / key).exists():
            return key


def save(config: dict[str, Any], context: RunContext, name: str, key: str, tags: dict[str, str], choices: dict[str, Any],
         overrides: list[str]) -> None:
    """The run's state: its config, and beside it its context and complete override list."""
    write_state(runs_root(config["output_dir"]) / key / STATE_FILE,
                {"name": name, "key": key, "config": config, "context": context.to_dict(), "overrides": overrides,
                 "tags": tags, "choices": choices})


def legacy_context(config: dict[str, Any]) -> RunContext:
    """State files written before the run context existed kept it inside the config
    (`_run`, `_zoo`, `_tags`): taken out of the config into a RunContext."""
    run, zoo, tags = config.pop("_run", None) or {}, config.pop("_zoo", None), config.pop("_tags", None) or {}
    return RunContext.from_dict({**{k: v for k, v in run.items() if k in ("run_id", "tracking_uri", "label", "quiet")},
                                 "zoo": {k: zoo.get(k) for k in ZooSource.__dataclass_fields__} if zoo else None, "tags": tags})


def resumable(output_dir: str) -> list[str]:
    return sorted(p.parent.name for p in runs_root(output_dir).glob(f"*/{STATE_FILE}"))


def same_name(output_dir: str, name: str) -> list[str]:
    """Storage keys of the earlier runs called `name`, oldest first."""
    keys = []
    for path in sorted(runs_root(output_dir).glob(f"*/{STATE_FILE}"), key=lambda p: p.stat().st_mtime):
        try:
            if read_state(path).get("name") == name:
                keys.append(path.parent.name)
        except (OSError, ValueError):
            continue
    return keys


def find(name: str, output_dir: str) -> Path | None:
    """The state file `resume=name` means: the run with that storage key, else the one run
    with that name (UserError when several have it)."""
    path = runs_root(output_dir) / name / STATE_FILE
    if path.is_file():
        return path
    keys = same_name(output_dir, name)
    if len(keys) > 1:
        raise UserError("resume", f"{len(keys)} runs are named {name!r}.",
                        f"name the one to continue by its key: {'; '.join(command('train', k) for k in keys)}.")
    return runs_root(output_dir) / keys[0] / STATE_FILE if keys else None


def read(path: Path) -> dict[str, Any]:
    """A run's saved state with its config (under the current package names, checked to build
    only what conf/ names) and its RunContext; states written before either change load too."""
    from components.legacy import current_targets
    from components.zoo.bundle import check_targets
    from pipelines.runtime.app import conf_targets

    state = read_state(path)
    config = current_targets(state["config"])
    context = RunContext.from_dict(state["context"]) if "context" in state else legacy_context(config)
    check_targets(config, conf_targets(), what=str(path))  # a state file builds only what conf/ names
    return {**state, "config": config, "context": context}


def load(name: str, output_dir: str, overrides: list[str], current: dict[str, Any]) -> dict[str, Any]:
    """The saved state of run `name`, checked: the run exists, did not finish, and the command
    line changes nothing but where and how robustly it runs."""
    path = find(name, output_dir)
    if path is None:
        known = resumable(output_dir)
        raise UserError("resume", f"no run named {name!r} under {runs_root(output_dir)}.",
                        "pass the name raysitter printed at the run's start, e.g. "
                        f"{'; '.join(command('train', k) for k in known[-5:]) or '(no resumable run there yet)'}; "
                        "set RAYSITTER_OUTPUT_DIR (or output_dir=) to the folder that run used.")
    changed = [o for o in overrides if o.lstrip("+~").split("=")[0] not in RESUME_OVERRIDES]
    if changed:
        raise UserError("resume", f"continues {name!r} with the configuration it started with, but the command line also "
                        f"changes {' '.join(changed)}.",
                        f"leave those out (only {', '.join(RESUME_OVERRIDES[1:])} may change on resume), or start a new run with them.")
    state = read(path)
    config, context = state["config"], state["context"]
    given = {o.lstrip("+~").split("=")[0] for o in overrides}
    for key in RESUME_OVERRIDES[2:]:  # what this command line sets (RAY_ADDRESS counts for the address)
        section, field = key.split(".")
        if key in given or (field == "address" and current[section].get(field)):
            config[section][field] = current[section][field]
    config["output_dir"] = output_dir  # where its state was found (RAYSITTER_OUTPUT_DIR or output_dir=)
    run_id = context.run_id
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from components.tracking import redact

    try:
        status = MlflowClient(config["tracking"]["uri"]).get_run(run_id).info.status
    except MlflowException as e:
        raise UserError("resume", f"run {name!r} was tracked as MLflow run {run_id} in {redact(config['tracking']['uri'])}, "
                        f"which cannot be read ({str(e).splitlines()[0]}).",
                        "start the tracking server it used (or set tracking.uri back), or start a new run.") from None
    if status == "FINISHED":
        raise UserError("resume", f"run {name!r} (MLflow run {run_id}) finished already.",
                        "start a new run; to train a finished model further, push it to the zoo and use raysitter finetune.")
    from pipelines.runtime.frozen import freeze

    return {**state, "config": freeze(config)}
