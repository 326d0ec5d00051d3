"""Shared by the benchmarks: the machine line, a plain table, composing raysitter's config."""
from __future__ import annotations

import os
from pathlib import Path
import platform
import sys
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent


def arguments(doc: str, flags: tuple[str, ...] = (), **numbers: int) -> Any:
    """The benchmark's options (`--name N` for each number, `--flag` for each flag) parsed from
    the command line, after printing the machine line every result table starts with."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    for name, default in numbers.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    for flag in flags:
        parser.add_argument(f"--{flag}", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    return args


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__}, Python {platform.python_version()}"


def cpu_model() -> str:
    """The CPU's model name (ratios differ between machines of one kind: every number names it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    cells = [[fmt(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda values: "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))  # noqa: E731
    return "\n".join([line(keys), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def compose(overrides: list[str], config_name: str = "train") -> dict[str, Any]:
    """raysitter's resolved config for these overrides (as the CLI composes it)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import OmegaConf

    from pipelines.runtime.app import CONF_DIR, rewrite_group_overrides

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=rewrite_group_overrides(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def clean_env(output_dir: Path) -> dict[str, str]:
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "RAY_ADDRESS": "local"}  # a Ray of its own
    env.update(RAYSITTER_OUTPUT_DIR=str(output_dir), PYTHONUNBUFFERED="1")
    return env


def cli_run(overrides: list[str], timeout: int = 1800) -> tuple[list[float], float]:
    """`raysitter train OVERRIDES` as a user runs it, in a fresh output folder. Returns the
    seconds between consecutive epoch ends (from MLflow's metric timestamps, so everything a
    real epoch costs is in them) and the startup seconds (CLI start to the first training step)."""
    import subprocess
    import tempfile
    import time

    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "outputs"
        started = time.time()
        proc = subprocess.run([str(BIN / "raysitter"), "train", *overrides], env=clean_env(out), cwd=tmp,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise SystemExit(f"raysitter train failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
        (run,) = client.search_runs([client.get_experiment_by_name("raysitter").experiment_id])
        stamps = sorted((m.step, m.timestamp / 1000) for m in client.get_metric_history(run.info.run_id, "epoch"))
        first_epoch_s = client.get_metric_history(run.info.run_id, "train/epoch_s")[0].value
    return [b[1] - a[1] for a, b in zip(stamps, stamps[1:])], stamps[0][1] - first_epoch_s - started
