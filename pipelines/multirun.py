"""Hydra multirun (`raysitter train -m a=1,2 b=x,y`): every job's MLflow run carries the tag
`raysitter.multirun` (the sweep folder), and a summary table of the group is printed at the end."""
from __future__ import annotations

import sys
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf


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
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(OmegaConf.select(config, "tracking.experiment"))
        if exp is None:
            return
        group = str(OmegaConf.select(config, "hydra.sweep.dir"))
        runs = client.search_runs([exp.experiment_id], f"tags.`raysitter.multirun` = '{group}'")
        table = Table(title=f"multirun {group}: {len(runs)} runs")
        for col in ("job", "overrides", "status", "val/acc", "test/acc", "run id"):
            table.add_column(col)
        for run in sorted(runs, key=lambda r: int(r.data.tags.get("raysitter.multirun.job", 0))):
            m = run.data.metrics
            table.add_row(run.data.tags.get("raysitter.multirun.job", "?"), run.data.tags.get("hydra.overrides", ""), run.info.status,
                          f"{m['val/acc']:.4f}" if "val/acc" in m else "-", f"{m['test/acc']:.4f}" if "test/acc" in m else "-", run.info.run_id)
        Console(width=None if sys.stdout.isatty() else 150).print(table)
