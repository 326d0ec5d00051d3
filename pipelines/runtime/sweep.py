"""The pieces of `raysitter tune`: search-space checks, each stage's configurations drawn on the
driver, every trial's override list and the command that reproduces it, the trial function Ray
Tune runs, and the sweep's state file (what resuming reads)."""
from __future__ import annotations

import json
import os
from pathlib import Path
import tempfile
from typing import TYPE_CHECKING, Any

from components.search import Dist, grid_values, has_dotted, parse_space, sample
from components.tracking import environment_tags, flatten
from components.tracking.mlflow_utils import set_tag
from pipelines.runtime.errors import UserError
from pipelines.runtime.tracking import PROJECT_DIR, log_dataset

if TYPE_CHECKING:  # MLflow is imported where it is used
    from mlflow.tracking import MlflowClient

ATTEMPT_TAG = "raysitter.trial"


def check_search(config: dict[str, Any]) -> dict[str, Dist]:
    """The search space parses and names keys that exist; raises UserError otherwise."""
    search = config["search"]
    try:
        space = parse_space(search["space"])
    except ValueError as e:
        raise UserError("search.space", f"{e}.", "fix the distribution in conf/search/ or the search.space override.") from None
    for key in space:
        if not has_dotted(config, key):
            raise UserError("search.space", f"{key!r} is not a key of the training config.", "use a dotted key that `raysitter train --cfg job` shows, e.g. optimizer.lr.")
    if not search["stages"] or any(s["samples"] < 1 or s["epochs"] < 1 for s in search["stages"]):
        raise UserError("search.stages", f"each stage needs samples ≥ 1 and epochs ≥ 1 (got {search['stages']}).", "e.g. search.stages=[{samples:12,epochs:3},{samples:6,epochs:10}].")
    if search["scheduler"] not in ("asha", "none"):
        raise UserError("search.scheduler", f"must be asha or none (got {search['scheduler']!r}).", "pass search.scheduler=asha or search.scheduler=none.")
    if search.get("trial_backend", "auto") not in BACKENDS:
        raise UserError("search.trial_backend", f"must be auto, train or function (got {search['trial_backend']!r}).", "pass search.trial_backend=auto (or train, function).")
    if search.get("trial_backend") == "function" and config["trainer"]["num_workers"] > 1:
        raise UserError("search.trial_backend", "is function, which runs one worker per trial, but trainer.num_workers > 1.", "pass search.trial_backend=train for multi-worker trials, or trainer.num_workers=1.")
    if search["method"] not in ("random", "grid"):
        raise UserError("search.method", f"must be random or grid (got {search['method']!r}).", "pass search.method=random or search.method=grid.")
    return space


BACKENDS = ("auto", "train", "function")


def trial_backend(config: dict[str, Any]) -> tuple[str, str]:
    """The backend trials run on, and why: `auto` takes Tune's function trainable with reused
    actors when a trial has one worker (it starts in about a second) and Ray Train inside the
    trial when it has more."""
    chosen = config["search"].get("trial_backend", "auto")
    workers = config["trainer"]["num_workers"]
    if chosen != "auto":
        return chosen, "search.trial_backend"
    if workers == 1:
        return "function", "auto: one worker per trial, trained in the Tune trial itself (no worker group to start)"
    return "train", f"auto: {workers} workers per trial, a Ray Train worker group in each trial"


TUNE_KEYS = ("search", "sweep_name", "preflight", "force", "resume")  # the sweep's own keys, not a trial's


def stage_values(space: dict[str, Dist], method: str, grid_points: int, samples: int, seed: int) -> list[dict[str, Any]]:
    """The configurations one stage trains, drawn on the driver: `samples` seeded draws (log
    space for loguniform), or the grid of `grid_points` values per dimension (every option of
    a choice). The same seed and stage give the same configurations."""
    import itertools

    import numpy as np

    if method == "grid":
        axes = [list(d.args) if d.kind == "choice" else grid_values(d, grid_points) for d in space.values()]
        return [dict(zip(space, combo)) for combo in itertools.product(*axes)]
    rng = np.random.default_rng(seed)
    return [{k: sample(d, rng) for k, d in space.items()} for _ in range(samples)]


def trial_overrides(command_line: list[str], values: dict[str, Any], epochs: int, worker_cpus: float) -> list[str]:
    """A trial's complete override list: the sweep's command line less the sweep's own keys, the
    sampled values (a choice over a config group selects that option), the stage's epochs and
    the CPUs each trial's worker gets."""
    from pipelines.runtime.schema import as_override

    def key(override: str) -> str:
        return override.lstrip("+~").split("=")[0].replace("/", ".")

    # the sweep's own keys go, and so do the keys this trial samples (its value wins, once)
    kept = [o for o in command_line if key(o).split(".")[0] not in TUNE_KEYS and key(o) not in values
            and not key(o).startswith("tracking.register")]  # the sweep registers its best; a trial registers nothing
    sampled = [f"{k}={repr(v) if isinstance(v, float) else as_override(v)}" for k, v in values.items()]
    return [*kept, *sampled, f"trainer.epochs={epochs}", f"trainer.resources_per_worker.CPU={worker_cpus}"]


def trial_command(overrides: list[str]) -> str:
    """The `raysitter train …` command that trains exactly this trial (quoted for the shell)."""
    import shlex

    return " ".join(["raysitter", "train", *(shlex.quote(o) for o in overrides)])


def log_trial_config(client: MlflowClient, run_id: str, values: dict[str, Any], config: dict[str, Any]) -> None:
    """The trial's sampled values (`search.*`) and its whole resolved config as params."""
    from components.tracking import redact

    public = dict(config)
    public["tracking"] = {**public.get("tracking", {}), "uri": redact(public.get("tracking", {}).get("uri"))}
    from mlflow.entities import Param

    params = [Param(f"search.{k}", str(v)[:6000]) for k, v in flatten(values).items()]
    params += [Param(k, str(v)[:6000]) for k, v in sorted(flatten(public).items())]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=params[i : i + 100])


def run_trial(params: dict[str, Any], stage: dict[str, Any]) -> None:
    """Ray Tune's function trainable: trial `params["trial"]` of the stage, whose config was
    composed from its own overrides on the driver; one Ray Train run (or the per-worker loop
    itself, `function` backend) with a nested MLflow run (parent = the sweep) that worker 0
    fills epoch by epoch."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from pipelines.runtime.ray_runner import make_trainer

    import ray

    # Ray Train's controller looks its cluster up by address; name this one explicitly so
    # another Ray instance on the same machine cannot make the lookup ambiguous.
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    ctx = tune.get_context()
    trial_id, sweep = ctx.get_trial_id(), stage["sweep"]
    trial = stage["trials"][params["trial"]]
    config = trial["config"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(sweep["tracking_uri"])
    done = finished_run(client, sweep, trial_id)
    if done is not None:  # finished before an interruption, but Tune had not saved that yet
        tune.report({**done.data.metrics, "resumed_from_mlflow": 1.0})
        return
    from pipelines.runtime.context import RunContext

    label = f"s{sweep['stage']}/{trial_id.split('_')[-1]}"
    run = client.create_run(
        sweep["experiment_id"],
        run_name=f"{sweep['name']}-s{sweep['stage']}-{trial_id.split('_')[-1]}",
        tags={**environment_tags(PROJECT_DIR, "raysitter tune"), "mlflow.parentRunId": sweep["parent_run_id"], "pipeline": "tune-trial", "sweep": sweep["name"],
              "stage": str(sweep["stage"]), ATTEMPT_TAG: trial_id, "command": trial["command"],
              "hydra.overrides": " ".join(trial["overrides"])},
    )
    run_id = run.info.run_id
    try:
        log_trial_config(client, run_id, trial["values"], config)
        log_dataset(client, run_id, config, sweep.get("data") or "data", None)
        context = RunContext(run_id=run_id, tracking_uri=sweep["tracking_uri"], label=label, sweep=sweep["name"], stage=sweep["stage"])
        if sweep["backend"] == "function":  # the per-worker loop right here: no worker group to start
            from pipelines.runtime.worker import TuneSession, run_training

            metrics = run_training(config, TuneSession(), context)
        else:
            result = make_trainer(config, context, f"{sweep['name']}-{trial_id}", storage_path=sweep["storage"],
                                  callbacks=[TuneReportCallback()]).fit()
            metrics = result.metrics or client.get_run(run_id).data.metrics
        if metrics.get("diverged"):
            set_tag(client, run_id, "raysitter.outcome", "diverged")
            client.set_terminated(run_id, "FAILED")
        else:
            from pipelines.runtime.training import record_outcome

            if not metrics.get("stopped_early"):  # said before FINISHED, as `close_orphans` says it
                set_tag(client, run_id, "raysitter.outcome", "completed")
            record_outcome(client, run_id, metrics)
            client.set_terminated(run_id, "FINISHED")
    except SystemExit as e:
        if e.code not in (0, None):
            client.set_terminated(run_id, "FAILED")
            raise
        # Tune stops a trial by exiting its report call: at the last epoch, by the scheduler (at
        # one of its rungs), or because the sweep was interrupted (Ctrl-C: anywhere else)
        logged = client.get_run(run_id)
        epoch = int(logged.data.metrics.get("epoch", 0))
        end_trial_run(client, run_id, all_epochs_logged(logged), "early_stopped" if epoch in sweep.get("stops_at", ()) else "interrupted")
        raise
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise


def finished_run(client: MlflowClient, sweep: dict[str, Any], trial_id: str) -> Any:
    """This trial's FINISHED MLflow run under the sweep, if an earlier attempt completed it."""
    runs = client.search_runs(
        [sweep["experiment_id"]],
        f"tags.mlflow.parentRunId = '{sweep['parent_run_id']}' and tags.`{ATTEMPT_TAG}` = '{trial_id}' and attributes.status = 'FINISHED'",
    )
    return runs[0] if runs else None


def trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str) -> str | None:
    """The run id of a trial's newest FINISHED MLflow run under the sweep."""
    runs = client.search_runs(
        [experiment_id],
        f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`{ATTEMPT_TAG}` = '{trial_id}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return runs[0].info.run_id if runs else None


def all_epochs_logged(run: Any) -> bool:
    """Whether a trial run logged every epoch its config asks for (`trainer.epochs`, a param
    logged before its first epoch): the one rule both a trial and its sweep close it by."""
    epochs = run.data.params.get("trainer.epochs")
    return epochs is not None and run.data.metrics.get("epoch", 0) >= int(epochs)


def end_trial_run(client: MlflowClient, run_id: str, done: bool, outcome: str) -> None:
    """FINISHED with `raysitter.outcome=completed` when `done`, else KILLED with `outcome`."""
    set_tag(client, run_id, "raysitter.outcome", "completed" if done else outcome)
    client.set_terminated(run_id, "FINISHED" if done else "KILLED")


def close_orphans(client: MlflowClient, experiment_id: str, parent_run_id: str, outcome: str) -> int:
    """Trial runs still RUNNING under the sweep end KILLED with `raysitter.outcome=outcome`,
    or FINISHED (`completed`) when they logged every epoch (Tune ends a trial's process as soon
    as its scheduler says stop, also at the last epoch); returns how many were cut short.

    On Ctrl-C a trial's own process may be closing its run at this very moment: it decides by
    the same rule, and a last epoch it logs after this read is seen by reading the run again
    after closing it, so that a finished trial never ends KILLED (its resume would run it twice)
    nor with a status and an outcome that disagree."""
    orphans = client.search_runs(
        [experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'"
    )
    cut_short = 0
    for run in orphans:
        run_id = run.info.run_id
        done = all_epochs_logged(run)
        end_trial_run(client, run_id, done, outcome)
        if not done and all_epochs_logged(client.get_run(run_id)):
            end_trial_run(client, run_id, True, outcome)
            done = True
        cut_short += not done
    return cut_short


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically (temporary file, then rename): a kill mid-write leaves the previous state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state.")
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2, default=str)
    os.replace(tmp, path)


def read_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
