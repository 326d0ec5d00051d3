"""Hydra multirun (`raysitter train -m a=1,2 b=x,y`): every job's MLflow run carries the tag
`raysitter.multirun` (the sweep folder), and a summary table of the group is printed at the end.
A job that fails (refused input, a failed or diverged run) does not stop the others: it is
recorded here, listed in the summary, and the command exits 1 (2 when every job was refused:
nothing ran, as for any refused command)."""
from __future__ import annotations

import os
from pathlib import Path
import sys
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf


FAILED: list[dict[str, str]] = []  # this process's failed jobs: job number, overrides, reason
JOBS: list[int] = []  # the multirun's jobs this process ran or (hydra/launcher=ray) handed out
SWEEP: list[str] = []  # the sweep folder Hydra made for this process's multirun


def drop_empty_sweep_folder() -> None:
    """After a multirun whose every job was refused: the sweep folder Hydra made for it holds
    its own multirun.yaml and empty job folders only, and goes (a refused command leaves
    nothing behind). A folder holding anything else stays as it is."""
    import shutil

    for folder in map(Path, SWEEP):
        if folder.is_dir() and all(p == folder / "multirun.yaml" or p.is_dir() and not any(p.iterdir()) for p in folder.rglob("*")):
            shutil.rmtree(folder)


def all_refused() -> bool:
    """Every job was refused before it started (the same mistake in each, e.g. a value given
    once beside a swept key): the command as a whole was refused."""
    return bool(JOBS) and len(FAILED) == len(JOBS) and all(job["reason"].startswith("refused") for job in FAILED)


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def job_number() -> int:
    return HydraConfig.get().job.num


def job_failed(error: BaseException) -> None:
    hc = HydraConfig.get()
    if isinstance(error, SystemExit):
        reason = {1: "failed", 2: "refused (see the error above)", 130: "interrupted"}.get(error.code, f"exit {error.code}")  # type: ignore[arg-type]
    else:
        import traceback

        traceback.print_exception(error)
        reason = f"{type(error).__name__}: {error}"
    record_failure(hc.job.num, list(hc.overrides.task), reason)


def record_failure(num: int, overrides: list[str], reason: str) -> None:
    FAILED.append({"job": str(num), "overrides": " ".join(overrides), "reason": reason})
    print(f"raysitter: multirun job {num} ({' '.join(overrides)}) {reason}; going on with the others", file=sys.stderr, flush=True)


def group_tags() -> dict[str, str]:
    """Tags that group this job with the rest of its multirun (empty for a single run)."""
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return {}
    return {"raysitter.multirun": str(hc.sweep.dir), "raysitter.multirun.job": str(hc.job.num)}


class MultirunSummary(Callback):
    """After the last job: one row per run of the group (job, overrides, status, accuracies)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient
        from rich.console import Console
        from rich.table import Table

        from components.tracking import default_tracking_uri

        uri = OmegaConf.select(config, "tracking.uri") or default_tracking_uri(OmegaConf.select(config, "output_dir"))
        group = str(OmegaConf.select(config, "hydra.sweep.dir"))
        SWEEP.append(group)
        runs = []
        if uri.startswith("http") or not uri.startswith("sqlite:///") or os.path.exists(uri.removeprefix("sqlite:///")):
            client = MlflowClient(uri)  # made only here: for SQLite, making one creates the store
            exp = client.get_experiment_by_name(OmegaConf.select(config, "tracking.experiment"))
            runs = client.search_runs([exp.experiment_id], f"tags.`raysitter.multirun` = '{group}'") if exp else []
        with_run = {run.data.tags.get("raysitter.multirun.job") for run in runs}
        # the folder under the table: in the title a long one wrapped it mid-phrase ("2 ⏎ runs")
        table = Table(title=f"multirun: {len(runs)} runs" + (f", {len(FAILED)} failed job(s)" if FAILED else ""),
                      caption=group, caption_justify="left")
        for col in ("job", "overrides", "status", "val/acc", "test/acc", "run id"):
            table.add_column(col)
        for run in sorted(runs, key=lambda r: int(r.data.tags.get("raysitter.multirun.job", 0))):
            m = run.data.metrics
            table.add_row(run.data.tags.get("raysitter.multirun.job", "?"), run.data.tags.get("hydra.overrides", ""), run.info.status,
                          f"{m['val/acc']:.4f}" if "val/acc" in m else "-", f"{m['test/acc']:.4f}" if "test/acc" in m else "-", run.info.run_id)
        for job in sorted(FAILED, key=lambda j: int(j["job"])):  # jobs refused before they opened a run
            if job["job"] not in with_run:
                table.add_row(job["job"], job["overrides"], job["reason"].upper() if " " not in job["reason"] else job["reason"], "-", "-", "-")
        Console(width=None if sys.stdout.isatty() else 150).print(table)
