"""Hydra multirun on Ray: raysitter's launcher (`hydra/launcher=ray`, jobs concurrently) against
Hydra's basic launcher (one job after another), the same jobs.

`--jobs` jobs of the default model (`seed=1..N`, `--epochs` epochs each), through the installed
console script from a fresh folder; the ray launcher with `--slots` jobs at a time. Wall time is
from the command's start to the end of the last job's MLflow run; each variant runs `--repeats`
times, interleaved (basic, ray, basic, …), and the table shows medians.

    python bench/multirun.py [--jobs 8] [--epochs 3] [--slots 2] [--repeats 3]

Last line: `ratio: X` = basic launcher's wall time ÷ ray launcher's (target ≥ 1.6 on 2 cores).
"""
from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import BIN, arguments, clean_env, table


def multirun(launcher: str, args) -> dict:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "outputs"
        cmd = [str(BIN / "raysitter"), "train", "-m", f"seed={','.join(str(i) for i in range(1, args.jobs + 1))}",
               f"trainer.epochs={args.epochs}", f"hydra/launcher={launcher}"]
        if launcher == "ray":
            cmd.append(f"hydra.launcher.max_concurrent={args.slots}")
        started = time.time()
        proc = subprocess.run(cmd, env=clean_env(out), cwd=tmp, capture_output=True, text=True, timeout=3600)
        exited = time.time()
        if proc.returncode != 0:
            raise SystemExit(f"raysitter train -m ({launcher}) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("raysitter").experiment_id])
        assert len(runs) == args.jobs and all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
        last_end = max(r.info.end_time for r in runs) / 1000
        busy = sum((r.info.end_time - r.info.start_time) / 1000 for r in runs)
        return {"wall": last_end - started, "exit": exited - started, "job s": busy / len(runs),
                "val/acc": statistics.mean(r.data.metrics["val/acc"] for r in runs)}


def main() -> None:
    args = arguments(__doc__, jobs=8, epochs=3, slots=2, repeats=3)
    results: dict[str, list[dict]] = {"basic": [], "ray": []}
    for i in range(args.repeats):
        for launcher in results:
            results[launcher].append(multirun(launcher, args))
            print(f"repeat {i + 1}/{args.repeats} {launcher}: {results[launcher][-1]['wall']:.1f} s", flush=True)
    median = {k: statistics.median(r["wall"] for r in v) for k, v in results.items()}
    rows = [{"launcher": k, "median wall s (to last job's end)": median[k], "runs (s)": " ".join(f"{r['wall']:.1f}" for r in v),
             "mean job s": statistics.mean(r["job s"] for r in v), "mean val/acc": statistics.mean(r["val/acc"] for r in v)}
            for k, v in results.items()]
    print(f"{args.jobs} jobs × {args.epochs} epochs of the default job; ray launcher: {args.slots} at a time")
    print(table(rows))
    print(f"ratio: {median['basic'] / median['ray']:.2f}")


if __name__ == "__main__":
    main()
