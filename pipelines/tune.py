"""raysitter tune: log-space random search with Ray Tune, coarse → fine.

    raysitter tune search=smoke                  # a tiny two-stage sweep (about a minute)
    raysitter tune search=lr_wd                  # the lecture's lr × weight-decay search
    raysitter tune resume=<sweep name>           # continue an interrupted sweep

Stage 1 samples the space for few epochs; each later stage samples a space narrowed (in log
space) around the previous stage's top-k trials. Every trial is a Ray Train run of the same
training code, with a nested MLflow run under the sweep's parent run.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
import csv
import functools
import logging
import math
import os
from pathlib import Path
import sys
import tempfile
import time

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from components.search import Dist, flatten_space, narrow
from pipelines.runtime import sweep, validate
from pipelines.runtime.app import hydra_app
from pipelines.runtime.errors import UserError
from pipelines.runtime.progress import trial_lines
from pipelines.runtime.tracking import RunTracker, tracked_run
from pipelines.runtime.training import hydra_tags

console = Console(width=None if sys.stdout.isatty() else 150)


def describe(space: dict[str, Dist]) -> str:
    return ", ".join(f"{k} ~ {d.describe()}" for k, d in space.items())


def compose_trials(config: dict, space: dict[str, Dist], stage: int, state: dict) -> list[dict]:
    """Each trial of the stage as its own run: its sampled values and the stage's epochs become
    overrides of the sweep's command line, and its config is composed from them and resolved
    here, on the driver (so interpolations follow the trial's values, and `oc.env` is read on
    this machine). Paths the driver made absolute stay so in every trial."""
    s = config["search"]
    spec = s["stages"][stage - 1]
    pinned = state.get("pins")
    if pinned is None:  # sweeps saved before pins were: the paths and store the driver decided
        pinned = [validate.pin("output_dir", config["output_dir"]), validate.pin("tracking.uri", config["tracking"]["uri"])]
        pinned += [validate.pin("data.root", config["data"]["root"])] if config["data"].get("root") else []
    trials = []
    for values in sweep.stage_values(space, s["method"], s["grid_points"], spec["samples"], config["seed"] * 1000 + stage):
        overrides = sweep.trial_overrides(state.get("overrides", []), values, spec["epochs"], s["worker_cpus"])
        trial_config = validate.compose_run("train", [*overrides, *pinned, "tracking.log_model=false"])
        trials.append({"values": values, "overrides": overrides, "command": sweep.trial_command(overrides), "config": trial_config})
    return trials


def asha_rungs(search: dict, epochs: int) -> list[int]:
    """The epochs at which ASHA may stop a trial of a stage this long (its rungs: grace period
    × reduction factor^k below `epochs`); none without ASHA. A trial that Tune stops anywhere
    else before its last epoch was interrupted."""
    if search["scheduler"] != "asha":
        return []
    grace, factor = search["grace_period"], search["reduction_factor"]
    rungs = int(math.log(epochs / grace) / math.log(factor) + 1) if epochs >= grace else 0
    return sorted({math.ceil(grace * factor**k) for k in range(rungs)} - {epochs})


def run_stage(config: dict, space: dict[str, Dist], stage: int, state: dict, tracker: RunTracker, restore: bool) -> list[dict]:
    """One stage as one Tuner over the trials `compose_trials` made; returns a dict per trial
    (its values, last metrics, epochs run)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    s = config["search"]
    spec = s["stages"][stage - 1]
    trials_spec = compose_trials(config, space, stage, state)
    backend, _ = sweep.trial_backend(config)
    stage_data = {
        "sweep": {
            "name": state["name"], "stage": stage, "parent_run_id": tracker.run_id, "experiment_id": tracker.experiment_id,
            "tracking_uri": tracker.uri, "storage": str(Path(config["output_dir"]) / "ray_results" / state["name"] / "trials"),
            "backend": backend, "data": state.get("data"), "stops_at": asha_rungs(s, spec["epochs"]),
        },
        "trials": trials_spec,
    }
    # A `function` trial trains inside the Tune function itself, so it takes the worker's CPUs too.
    cpus = s["trial_cpus"] + (s["worker_cpus"] if backend == "function" else 0)
    trainable = tune.with_resources(functools.partial(sweep.run_trial, stage=stage_data), {"CPU": cpus})
    storage = str(Path(config["output_dir"]) / "ray_results" / state["name"])
    stage_name = f"stage{stage}"
    if restore and tune.Tuner.can_restore(f"{storage}/{stage_name}"):
        console.print(f"[bold]stage {stage}[/]: resuming the unfinished trials of {storage}/{stage_name}")
        tuner = tune.Tuner.restore(f"{storage}/{stage_name}", trainable=trainable, resume_unfinished=True, restart_errored=True)
    else:
        scheduler = None
        if s["scheduler"] == "asha":
            scheduler = ASHAScheduler(time_attr="training_iteration", max_t=spec["epochs"], grace_period=s["grace_period"], reduction_factor=s["reduction_factor"])
        tuner = tune.Tuner(
            trainable,
            # the configurations were drawn (seeded) and composed above: Tune runs each once, in order
            param_space={"trial": tune.grid_search(list(range(len(trials_spec))))},
            tune_config=tune.TuneConfig(
                metric=s["metric"], mode=s["mode"], num_samples=1, scheduler=scheduler,
                # the generator bounds concurrency itself: Tune ignores max_concurrent_trials beside it
                search_alg=BasicVariantGenerator(max_concurrent=s["max_concurrent"]),
                # `function` trials run in the Tune actor itself: reusing the actors saves each trial
                # a process start and the torch import (the loop seeds everything it uses per trial)
                reuse_actors=backend == "function",
            ),
            run_config=tune.RunConfig(name=stage_name, storage_path=storage, verbose=0,
                                      # Tune pickles its run config: the callback prints with plain print (a Console holds locks)
                                      callbacks=[trial_lines(len(trials_spec), s["metric"], s["mode"])]),
        )
    console.print(f"[bold]stage {stage}[/]: {len(trials_spec)} trials × {spec['epochs']} epochs over {describe(space)}")
    with stop_noticed(stage):
        grid = tuner.fit()
    trials = []
    for result in grid:
        m = result.metrics or {}
        index = (result.config or {}).get("trial")
        values = trials_spec[index]["values"] if index is not None else {}
        trials.append({
            "stage": stage, "trial_id": m.get("trial_id") or Path(result.path).name, **values,
            "command": trials_spec[index]["command"] if index is not None else "",
            "epochs_run": m.get("training_iteration", 0), "error": str(result.error).splitlines()[0] if result.error else "",
            **{k: m[k] for k in ("val/acc", "val/loss", "train/loss", "train/acc", "diverged") if k in m},
        })
    unfinished = [t for t in trials if not t["error"] and t["epochs_run"] == 0]
    if unfinished:
        raise KeyboardInterrupt(f"stage {stage} stopped before {len(unfinished)} trials ran")
    # a run still RUNNING lost its process before it could say why it stopped: at one of ASHA's
    # rungs when there are rungs, and otherwise it was not stopped by the sweep
    cut = "early_stopped" if stage_data["sweep"]["stops_at"] else "interrupted"
    sweep.close_orphans(tracker.client, tracker.experiment_id, tracker.run_id, cut)
    stopped = sum(1 for t in trials if not t["error"] and not t.get("diverged") and t["epochs_run"] < spec["epochs"])
    if stopped:
        console.print(f"  ASHA stopped {stopped} trials early")
    return trials


def score(trial: dict, metric: str, mode: str) -> float:
    v = trial.get(metric)
    if not isinstance(v, (int, float)) or v != v or trial.get("diverged"):
        return float("-inf")
    return v if mode == "max" else -v


def log_sweep(tracker: RunTracker, config: dict, trials: list[dict], narrowing: list[str]) -> dict:
    from components.diagnostics import plots

    s = config["search"]
    best = max(trials, key=lambda t: score(t, s["metric"], s["mode"]))
    client, run_id = tracker.client, tracker.run_id
    client.log_metric(run_id, f"best/{s['metric']}", float(best.get(s["metric"], float("nan"))))
    space_keys = list(flatten_space(s["space"]))
    for key in space_keys:
        client.log_param(run_id, f"best.{key}", best.get(key))
    client.set_tag(run_id, "best.trial", best["trial_id"])
    keys = sorted({k for t in trials for k in t})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        with open(out / "trials.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(trials)
        (out / "narrowing.txt").write_text("\n".join(narrowing) + "\n")
        paths = [out / "trials.csv", out / "narrowing.txt"]
        space = flatten_space(s["space"])
        numeric = [k for k in space_keys if all(isinstance(t.get(k), (int, float)) for t in trials)]
        for k in numeric:
            log_axis = "loguniform" in space[k]
            paths.append(plots.metric_vs_param(trials, k, s["metric"], out / f"{s['metric'].replace('/', '_')}_vs_{k}.png", log=log_axis))
        if "optimizer.lr" in numeric and "optimizer.weight_decay" in numeric:
            paths.append(plots.param_scatter(trials, "optimizer.lr", "optimizer.weight_decay", s["metric"], out / "lr_vs_weight_decay.png"))
        for p in paths:
            client.log_artifact(run_id, str(p))
    return best


def print_summary(config: dict, trials: list[dict], best: dict, overrides: list[str], tracker: RunTracker) -> None:
    s = config["search"]
    keys = list(flatten_space(s["space"]))
    table = Table(title=f"top trials by {s['metric']}")
    for col in ("stage", "trial", *keys, s["metric"], "epochs"):
        table.add_column(col)
    for t in sorted(trials, key=lambda t: score(t, s["metric"], s["mode"]), reverse=True)[:5]:
        value = t.get(s["metric"])
        table.add_row(str(t["stage"]), t["trial_id"], *(f"{t.get(k):.3g}" if isinstance(t.get(k), float) else str(t.get(k)) for k in keys),
                      f"{value:.4f}" if isinstance(value, float) else str(value), str(t["epochs_run"]))
    console.print(table)
    keep = [o for o in overrides if not o.split("=")[0].lstrip("+~").startswith(("search", "resume", "sweep_name", "preflight", "force", "tracking.experiment", "tracking.register"))]
    sets = [f"{k}={best[k]:.4g}" if isinstance(best[k], float) else f"{k}={best[k]}" for k in keys]
    epochs = s["stages"][-1]["epochs"]
    console.print(f"retrain the best:  raysitter train {' '.join(keep + sets)} trainer.epochs={epochs}", soft_wrap=True)
    if best.get("command"):
        console.print(f"the best trial, exactly:  {best['command']}", soft_wrap=True)
    console.print(f"MLflow parent run  {tracker.run_id}  ({tracker.shown}, experiment {config['tracking']['experiment']})", soft_wrap=True)


def preflight(config: dict, overrides: list[str]) -> None:
    """raysitter check's gating checks; a failing model does not get a sweep unless force=true."""
    from pipelines.runtime.probes import gating_passed, print_table
    from pipelines.runtime.probes import run_probes_remote, unregularised

    plain = unregularised(validate.running_command()[0], overrides, config)
    report = run_probes_remote(config, plain, 1, range_test=False, print_fn=lambda text, flush=True: console.print(f"preflight: {text}"))
    if not gating_passed(report["results"]):
        print_table(report["results"], console)
        raise UserError("preflight", "a gating check failed on this model, so the sweep would search a broken setup.",
                        "fix what the table above says, or pass force=true to sweep anyway (preflight=false skips the checks).")
    console.print("preflight: initial loss, regularisation and overfit checks PASS")


def sweep_state(config: dict, choices: dict, overrides: list[str], pins: list[str]) -> tuple[dict, Path, bool]:
    """A new sweep's state, or the saved one when `resume=NAME`."""
    root = Path(config["output_dir"]) / "sweeps"
    if config.get("resume"):
        path = root / config["resume"] / "state.json"
        if not path.is_file():
            known = sorted(p.name for p in root.glob("*") if (p / "state.json").is_file())
            raise UserError("resume", f"no sweep named {config['resume']!r} under {root}.", f"use one of: {', '.join(known) or '(none yet)'}.")
        state = sweep.read_state(path)
        from components.legacy import current_targets
        from components.zoo.bundle import check_targets

        state["config"] = current_targets(state["config"])  # states written before the package renames
        from pipelines.runtime.app import conf_targets

        check_targets(state["config"], conf_targets(), what=str(path))  # a state file builds only what conf/ names
        planned = (state["config"].get("search") or {}).get("stages") or ()
        if planned and len(state.get("stages", ())) >= len(planned) and sweep_run_finished(state):
            raise UserError("resume", f"sweep {config['resume']!r} finished already (all {len(state['stages'])} stage(s) done, its MLflow run "
                                      f"{state['parent_run_id']} FINISHED): there is nothing to resume.",
                            f"start a new sweep (another sweep_name), or build on this one: raysitter ensemble sweep={config['resume']}.")
        return state, path, True
    name = config.get("sweep_name") or f"tune-{choices.get('search', 'search')}" + time.strftime("-%Y%m%d-%H%M%S")
    path = root / name / "state.json"
    if path.exists():
        raise UserError("sweep_name", f"a sweep named {name!r} exists already.", f"resume it with resume={name}, or pick another sweep_name.")
    return {"name": name, "config": config, "overrides": overrides, "pins": pins, "stages": [], "parent_run_id": None}, path, False


def sweep_run_finished(state: dict) -> bool:
    """Whether the sweep's MLflow run ended FINISHED (after its last stage it still logs its
    results and registers its best: a sweep interrupted there resumes to do that)."""
    from mlflow.tracking import MlflowClient

    try:
        return MlflowClient(state["config"]["tracking"]["uri"]).get_run(state["parent_run_id"]).info.status == "FINISHED"
    except Exception:  # an unreadable store is for the resumed sweep to report
        return False


@contextmanager
def stop_noticed(stage: int) -> Iterator[None]:
    """Ctrl-C during `Tuner.fit` as an interruption of the sweep, however the stage ended. Tune
    answers the first SIGINT with a handler of its own: it ends the run gracefully (the trials
    checkpointed, resumable) and `fit` returns as if the stage were over. When the Ctrl-C came
    as the stage's last trials finished, nothing was left unfinished to tell, and the sweep went
    on with its next stage and exited 0 (seen in CI). Tune puts the handler it found back when
    it catches a stop, and otherwise leaves its own installed after `fit` (a Ctrl-C between stages
    went to it and was lost); here raysitter's handler goes back in place either way. Tune's
    closing advice to resume with `Tuner.restore(...)` is dropped: a sweep resumes with
    `raysitter tune resume=NAME` (printed at its start and on its way out), which also reopens
    its MLflow runs."""
    import signal
    import threading

    watching = threading.current_thread() is threading.main_thread() and not int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0"))
    ours = signal.getsignal(signal.SIGINT) if watching else None
    tune_log = logging.getLogger("ray.tune.tune")
    tune_log.addFilter(not_tunes_restore_hint)
    try:
        yield
    finally:
        tune_log.removeFilter(not_tunes_restore_hint)
        caught = watching and getattr(signal.getsignal(signal.SIGINT), "__name__", "") != "signal_interrupt_tune_run"
        if watching:
            signal.signal(signal.SIGINT, ours)
    if caught:
        raise KeyboardInterrupt(f"stage {stage} stopped")


def not_tunes_restore_hint(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(("Experiment has been interrupted", "Training has been interrupted"))


def run_stages(config: dict, space: dict[str, Dist], state: dict, state_path: Path, tracker: RunTracker,
               resuming: bool) -> tuple[list[dict], list[str]]:
    """Every stage not done yet, each narrowing the space for the next; the state file is
    rewritten after each stage. Returns all trials and the narrowing log."""
    trials: list[dict] = [t for st in state["stages"] for t in st["trials"]]
    narrowing: list[str] = [st["narrowing"] for st in state["stages"]]
    for stage in range(1, len(config["search"]["stages"]) + 1):
        if stage <= len(state["stages"]):
            space = {k: Dist(d["kind"], tuple(d["args"])) for k, d in state["stages"][stage - 1]["next_space"].items()}
            continue
        stage_trials = run_stage(config, space, stage, state, tracker, restore=resuming)
        s = config["search"]
        last = stage == len(s["stages"])
        new_space = space if last else narrow(space, stage_trials, s["metric"], s["mode"], s["top_k"], s["margin"])
        line = f"stage {stage} → {stage + 1}: " + "; ".join(f"{k}: {space[k].describe()} → {new_space[k].describe()}" for k in space)
        if last:
            line = f"stage {stage} (last): " + describe(space)
        console.print(line)
        trials += stage_trials
        narrowing.append(line)
        state["stages"].append({"trials": stage_trials, "narrowing": line, "next_space": {k: {"kind": d.kind, "args": list(d.args)} for k, d in new_space.items()}})
        sweep.write_state(state_path, state)
        space = new_space
    return trials, narrowing


def no_storage_settings(cfg: DictConfig) -> None:
    """A sweep keeps its Tune experiment under OUTPUT_DIR/ray_results: `trainer.storage_path`
    (and its endpoint) are refused first, before the checks of the rest (an S3 bucket's among
    them) would have the user fix what a sweep then refuses anyway."""
    for key in ("storage_path", "storage_endpoint"):
        try:
            value = cfg.trainer.get(key)
        except Exception:  # an interpolation that does not resolve: validate.prepare says so
            continue
        if value:
            raise UserError(f"trainer.{key}", f"is {value}, but a sweep keeps its Tune experiment and trials under "
                            "OUTPUT_DIR/ray_results (object storage for sweeps is not supported yet).",
                            f"leave trainer.{key} unset for tune (on a cluster, put OUTPUT_DIR on a disk every node mounts); "
                            "train the chosen configuration with raysitter train trainer.storage_path=… afterwards.")


def tune(cfg: DictConfig) -> dict:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    no_storage_settings(cfg)
    run = validate.prepare(cfg)
    config = run.config
    tags, choices = hydra_tags("tune")  # the same pipeline/overrides/command tags as train and check
    overrides = list(HydraConfig.get().overrides.task)
    state, state_path, resuming = sweep_state(config, choices, overrides, run.pins)
    state.setdefault("data", choices.get("data"))  # the dataset's name on every trial run
    if resuming:
        config = {**state["config"], "output_dir": config["output_dir"]}
    space = sweep.check_search(config)
    from pipelines.runtime import ray_runner

    # Tune saves its experiment state (what `resume=` restores) at most every this many seconds;
    # trials here are short, so save often: a killed driver then loses no finished trial.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no Tune banners; trials print their own epoch lines
    ray_runner.init_ray(config["trainer"])
    if config.get("preflight", True) and not config.get("force") and not resuming:
        preflight(config, run.overrides)
    tags.update({"sweep": state["name"], "raysitter.kind": "sweep"})
    with tracked_run(config, state["name"], tags, resume_run_id=state.get("parent_run_id")) as tracker:
        if not resuming:
            tracker.log_config(config)
        else:
            killed = sweep.close_orphans(tracker.client, tracker.experiment_id, tracker.run_id, "interrupted")
            console.print(f"resuming sweep {state['name']}: {len(state['stages'])} stage(s) done, {killed} interrupted trial run(s) marked KILLED")
        state["parent_run_id"] = tracker.run_id
        sweep.write_state(state_path, state)
        console.print(f"sweep [bold]{state['name']}[/] (resume with: raysitter tune resume={state['name']})")
        backend, why = sweep.trial_backend(config)
        console.print(f"trial backend: {backend} ({why})")
        try:
            trials, narrowing = run_stages(config, space, state, state_path, tracker, resuming)
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM: no trial run is left RUNNING (resume reopens the sweep)
            sweep.close_orphans(tracker.client, tracker.experiment_id, tracker.run_id, "interrupted")
            raise
        tracker.client.log_text(tracker.run_id, "\n".join(narrowing), "narrowing_log.txt")
        best = log_sweep(tracker, config, trials, narrowing)
    print_summary(config, trials, best, overrides, tracker)
    if config["tracking"].get("register_as"):
        from pipelines.runtime.training import register

        best_run = sweep.trial_run(tracker.client, tracker.experiment_id, tracker.run_id, best["trial_id"])
        if best_run is None:
            raise SystemExit(f"raysitter tune: error in `tracking.register_as`: the best trial {best['trial_id']} has no finished MLflow run to register.")
        register(config, tracker.uri, best_run)
    return {"name": state["name"], "trials": trials, "best": best, "parent_run_id": tracker.run_id}


@hydra_app("tune")
def main(cfg: DictConfig) -> None:
    try:
        tune(cfg)
    except KeyboardInterrupt as e:
        why = f" ({e})" if str(e) else ""  # Tune's forced stop (Ctrl-C pressed again) says nothing
        print(f"raysitter tune: interrupted{why}; the sweep's MLflow run is marked KILLED. Resume with the command printed at its start.", file=sys.stderr, flush=True)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
