"""What `hydra/launcher=ray` does (hydra_plugins.raysitter_launcher): a multirun's jobs as Ray
tasks, concurrently, on the local Ray or the cluster the command joins.

- Each job is checked first, here (composition was Hydra's; declared types, ranges and rules):
  a refused job is listed as refused and costs no Ray task.
- A job runs as a Ray task reserving `job_cpus` (0 by default: its driver waits on Ray Train and
  MLflow, the CPUs stay for the training workers) and runs exactly what `raysitter train` runs
  (the pipeline's own Hydra task, through Hydra's `run_job`), so names, tags, pins and the MLflow
  run are the same as a job of the basic launcher.
- Jobs start while their workers' resources (`trainer.num_workers` × `resources_per_worker`, a
  GPU per worker with `use_gpu`) fit in what Ray had free when the multirun began, at most
  `max_concurrent` at a time; a job that needs more than the cluster has runs alone.
- A failing job is recorded (the summary lists it, the command exits 1); the others go on. On
  Ctrl-C every running job is interrupted and gets `drain_s` seconds to mark its run KILLED.
"""
from __future__ import annotations

from collections.abc import Sequence
import importlib
import logging
import os
from pathlib import Path
import sys
import time
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from pipelines.runtime import multirun
from pipelines.runtime.errors import UserError, report_and_exit

# what a job's process needs from the launcher's environment (a worker started earlier, by
# another command or `ray start`, does not have it)
PASSED_ENV = ("RAYSITTER_", "MLFLOW_", "AWS_")


def job_resources(config: DictConfig, gpus_exist: bool) -> dict[str, float]:
    """What one job's training workers take from the cluster."""
    trainer = OmegaConf.to_container(config.trainer, resolve=True) if "trainer" in config else {}
    workers = int(trainer.get("num_workers", 1))
    need = {k: float(v) * workers for k, v in (trainer.get("resources_per_worker") or {"CPU": 1}).items()}
    if trainer.get("use_gpu") and gpus_exist:  # no GPU anywhere: the job falls back to the CPU
        need["GPU"] = need.get("GPU", 0.0) + workers
    return {k: v for k, v in need.items() if v > 0}


def fits(need: dict[str, float], free: dict[str, float]) -> bool:
    return all(free.get(k, 0.0) + 1e-9 >= v for k, v in need.items())


def check_job(sweep_config: DictConfig) -> None:
    """A job's config checked as `raysitter train` checks a command line before Ray (UserError),
    and, for a Ray this command will start, whether its workers fit this machine (inside the
    job's Ray task that check no longer can tell)."""
    from pipelines.runtime import validate

    validate.check_composed(sweep_config)
    validate.check_fits_this_machine({"trainer": OmegaConf.to_container(sweep_config.trainer, resolve=True)})


def prepare_store(config: DictConfig) -> None:
    """The embedded store and the experiment exist before jobs start in the same second
    (SQLite's schema is created by the first client; two creating it at once collide)."""
    from components.tracking import default_tracking_uri
    from pipelines.runtime.tracking import open_experiment
    from pipelines.runtime.validate import absolute

    output_dir = absolute(str(config.output_dir))
    uri = OmegaConf.select(config, "tracking.uri") or default_tracking_uri(output_dir)
    if uri.startswith("sqlite:///") and OmegaConf.select(config, "tracking.experiment"):
        open_experiment(uri, str(config.tracking.experiment), output_dir)


def run_remote_job(module: str, sweep_config: DictConfig, hydra_context: Any, cwd: str, env: dict[str, str]) -> tuple[JobReturn, list[dict[str, str]]]:
    """Inside the job's Ray task: the pipeline's Hydra task, as Hydra's basic launcher runs it."""
    from hydra.core.utils import run_job

    os.environ.update(env)
    if os.path.isdir(cwd):  # the same machine or a shared filesystem: paths mean what they meant
        os.chdir(cwd)
    task = importlib.import_module(module).main.hydra_task
    multirun.FAILED.clear()
    multirun.JOBS.clear()  # this process may have run other jobs before: only its FAILED go back
    ret = run_job(hydra_context=hydra_context, task_function=task, config=sweep_config,
                  job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    ret.hydra_cfg = None  # large, and the sweeper needs only the job's own config and result
    return ret, list(multirun.FAILED)


def empty_return(sweep_config: DictConfig, overrides: Sequence[str]) -> JobReturn:
    """The result of a job that did not run to its end (refused, or its process lost): like a
    job whose failure the pipeline recorded, it returns nothing and the summary says why."""
    ret = JobReturn(overrides=list(overrides), cfg=sweep_config, working_dir=os.getcwd(),
                    task_name=str(OmegaConf.select(sweep_config, "hydra.job.name")))
    ret.status, ret.return_value = JobStatus.COMPLETED, None
    return ret


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    import ray

    from pipelines.runtime.ray_runner import init_ray

    config: DictConfig = launcher.config
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    module = getattr(launcher.task_function, "pipeline", None)
    try:
        check_settings(launcher, module)
        if "trainer" in config:  # a Ray given by address answers there (Ray would retry it for ever)
            from pipelines.runtime.validate import check_ray_address

            check_ray_address({"trainer": OmegaConf.to_container(config.trainer, resolve=True)})
    except UserError as e:
        multirun.SWEEP.append(str(config.hydra.sweep.dir))  # refused as a whole: the sweep folder Hydra made goes
        multirun.drop_empty_sweep_folder()
        report_and_exit(e)

    jobs: list[tuple[int, DictConfig, list[str]]] = []
    results: dict[int, JobReturn] = {}
    for i, overrides in enumerate(job_overrides):
        idx = initial_job_idx + i
        multirun.JOBS.append(idx)
        sweep_config = launcher.hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"job{idx}"
            sweep_config.hydra.job.num = idx
            # resolved here, once: `${now:…}` in another process would name another folder
            sweep_config.hydra.sweep.dir = str(sweep_config.hydra.sweep.dir)
        try:
            check_job(sweep_config)
        except UserError as e:
            print(e.paragraph(), file=sys.stderr, flush=True)
            multirun.record_failure(idx, filter_overrides(overrides), "refused (see the error above)")
            results[idx] = empty_return(sweep_config, overrides)
            continue
        jobs.append((idx, sweep_config, list(overrides)))
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    if not jobs:
        return [results[initial_job_idx + i] for i in range(len(job_overrides))]

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    prepare_store(config)
    init_ray(OmegaConf.to_container(config.trainer, resolve=True) if "trainer" in config else {})
    free = {k: float(v) for k, v in ray.available_resources().items()}
    gpus_exist = ray.cluster_resources().get("GPU", 0) > 0
    cap = int(launcher.max_concurrent) if launcher.max_concurrent else len(jobs)
    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV)}
    remote = ray.remote(num_cpus=float(launcher.job_cpus), max_retries=0)(run_remote_job)
    print(f"raysitter: {len(jobs)} job(s) on Ray (hydra/launcher=ray), at most {min(cap, len(jobs))} at a time "
          f"as free resources allow ({', '.join(f'{k} {v:g}' for k, v in sorted(free.items()) if k in ('CPU', 'GPU'))} free)", flush=True)

    pending = list(jobs)
    running: dict[Any, tuple[int, DictConfig, list[str], dict[str, float]]] = {}
    try:
        while pending or running:
            while pending and len(running) < cap:
                idx, sweep_config, overrides = pending[0]
                need = job_resources(sweep_config, gpus_exist)
                if running and not fits(need, free):
                    break
                pending.pop(0)
                for k, v in need.items():
                    free[k] = free.get(k, 0.0) - v
                print(f"raysitter: job {idx} started: {' '.join(filter_overrides(overrides)) or '(no overrides)'}", flush=True)
                ref = remote.options(name=f"job{idx}").remote(module, sweep_config, launcher.hydra_context, os.getcwd(), env)
                running[ref] = (idx, sweep_config, overrides, need)
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                idx, sweep_config, overrides, need = running.pop(ref)
                for k, v in need.items():
                    free[k] = free.get(k, 0.0) + v
                results[idx] = collect(ref, idx, sweep_config, overrides)
    except KeyboardInterrupt:
        from pipelines.runtime.tracking import ignore_stops

        ignore_stops()  # Ctrl-C pressed again must not cut the drain short
        interrupt(list(running), launcher.drain_s)
        print(f"raysitter: multirun interrupted: {len(running)} running job(s) stopped (their MLflow runs KILLED; each printed "
              f"how to resume it), {len(pending)} not started.", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    return [results[initial_job_idx + i] for i in range(len(job_overrides))]


def check_settings(launcher: Any, module: str | None) -> None:
    if module is None or module == "__main__":
        raise UserError("hydra/launcher", "is ray, which runs raysitter's pipelines by their module name, and this one has none "
                        "(a script run by its path).", "run it as `raysitter train -m …` or `python -m pipelines.train -m …`, "
                        "or pass hydra/launcher=basic.")
    cap = launcher.max_concurrent
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise UserError("hydra.launcher.max_concurrent", f"must be a whole number ≥ 1 or null (got {cap!r}).",
                        "pass e.g. hydra.launcher.max_concurrent=2, or null to fit as many jobs as the free resources allow.")
    for key, value in (("job_cpus", launcher.job_cpus), ("drain_s", launcher.drain_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise UserError(f"hydra.launcher.{key}", f"must be a number ≥ 0 (got {value!r}).", f"pass e.g. hydra.launcher.{key}=0.")


def collect(ref: Any, idx: int, sweep_config: DictConfig, overrides: list[str]) -> JobReturn:
    import ray

    try:
        ret, failed = ray.get(ref)
    except ray.exceptions.RayTaskError as e:  # raised outside the pipeline's own handling (Hydra's run_job)
        print(str(e), file=sys.stderr, flush=True)
        cause = e.cause if isinstance(e.cause, BaseException) else e
        multirun.record_failure(idx, filter_overrides(overrides), f"failed: {type(cause).__name__}: {str(cause)[:200]}")
        return empty_return(sweep_config, overrides)
    except Exception as e:  # the job's process was lost (killed, out of memory), or its task cancelled
        last = [line for line in str(e).splitlines() if line.strip()]
        multirun.record_failure(idx, filter_overrides(overrides), f"lost ({type(e).__name__}: {(last[-1] if last else '')[:200]})")
        return empty_return(sweep_config, overrides)
    for job in failed:
        multirun.FAILED.append(job)
    print(f"raysitter: job {idx} {'failed' if failed else 'finished'}", flush=True)
    return ret


def interrupt(refs: list[Any], drain_s: float) -> None:
    """Ctrl-C: each running job gets a KeyboardInterrupt (its run ends KILLED, resumable)."""
    import ray

    print(f"\nraysitter: interrupting {len(refs)} running job(s)…", file=sys.stderr, flush=True)
    for ref in refs:
        ray.cancel(ref)
    deadline = time.monotonic() + drain_s
    waiting = list(refs)
    while waiting and time.monotonic() < deadline:
        _, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=max(0.1, deadline - time.monotonic()))
    for ref in refs:  # each job's end read here: a result never read is logged by Ray, when it is
        try:          # freed, as an "Unhandled error" with the cancelled task's traceback
            ray.get(ref, timeout=0)
        except Exception:
            pass
