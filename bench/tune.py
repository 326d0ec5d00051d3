"""Ray Tune through `raysitter tune`: scheduling overhead and what ASHA saves.

One random-search stage of N trials over the learning rate and L2 strength (log space), E
epochs each, `max_concurrent` trials at a time, single-worker trials (`trial_backend=function`),
run twice on the same seeded configurations: without early stopping and with ASHA (grace
`--grace` epochs, keep the top 1/`--reduction` at each rung).
From the MLflow trial runs:

- wall vs ideal: the sweep's trial phase (first trial start → last trial end) against the sum
  of the trials' own durations / max_concurrent (target ≤ 1.2×);
- compute: epochs trained by all trials, and the best val/acc reached (ASHA target: ≥ 3× less
  compute at ≤ 0.5 points of accuracy lost).

    python bench/tune.py [--trials 32] [--epochs 16] [--concurrent 2] [--grace 1] [--reduction 2]

Last line: `ratio: X` = compute without early stopping ÷ compute with ASHA.

    python bench/tune.py --default-sweep [--repeats 3]

The default sweep instead (`raysitter tune`: search=lr_wd, two stages, ASHA, the default trial
backend), its wall time against the ideal: per stage, first trial start → last trial's last
report, summed, against Σ of the trials' own times (start → last report) ÷ the concurrency the
config allows (search.max_concurrent, or fewer when the CPUs hold fewer trials). Medians of
`--repeats` runs. Last line: `ratio: X` = wall ÷ ideal (target ≤ 1.3).
"""
from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from _common import BIN, arguments, clean_env, table


def sweep(scheduler: str, args) -> dict:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "outputs"
        cmd = [str(BIN / "raysitter"), "tune", "preflight=false", f"sweep_name=bench-{scheduler}", "seed=0",
               f"search.stages=[{{samples:{args.trials},epochs:{args.epochs}}}]", f"search.scheduler={scheduler}",
               "search.trial_backend=function", f"search.max_concurrent={args.concurrent}", f"search.grace_period={args.grace}",
               f"search.reduction_factor={args.reduction}",
               "diagnostics=off"]
        proc = subprocess.run(cmd, env=clean_env(out), cwd=tmp, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise SystemExit(f"raysitter tune failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("raysitter-tune").experiment_id])
        trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
        # a trial's own time: from its MLflow run's start to its last epoch (an early-stopped run
        # is closed a little later, when Tune stops it)
        ends = {r.info.run_id: max((m.timestamp for m in client.get_metric_history(r.info.run_id, "epoch")), default=r.info.start_time)
                for r in trials}
        durations = [(ends[r.info.run_id] - r.info.start_time) / 1000 for r in trials]
        wall = (max(ends.values()) - min(r.info.start_time for r in trials)) / 1000
        epochs = sum(int(r.data.metrics.get("epoch", 0)) for r in trials)
        best = max(r.data.metrics.get("val/acc", 0.0) for r in trials)
    ideal = sum(durations) / args.concurrent
    return {"scheduler": scheduler, "trials": len(trials), "epochs trained": epochs, "best val/acc": best,
            "trial phase s": wall, "ideal s": ideal, "wall / ideal": wall / ideal}


def default_sweep() -> dict:
    import os

    from mlflow.tracking import MlflowClient

    from _common import compose

    search = compose([], "tune")["search"]
    per_trial = search["trial_cpus"] + search["worker_cpus"]  # a one-worker trial runs as a function trial (auto)
    allowed = max(1, min(search["max_concurrent"], int((os.cpu_count() or 1) / per_trial + 1e-9)))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "outputs"
        started = time.time()
        proc = subprocess.run([str(BIN / "raysitter"), "tune", "sweep_name=bench-default"], env=clean_env(out), cwd=tmp,
                              capture_output=True, text=True, timeout=3600)
        total = time.time() - started
        if proc.returncode != 0:
            raise SystemExit(f"raysitter tune failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("raysitter-tune").experiment_id])
        trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") and r.data.tags.get("stage")]
        ends = {r.info.run_id: max((m.timestamp for m in client.get_metric_history(r.info.run_id, "epoch")), default=r.info.start_time)
                for r in trials}
        wall = 0.0
        for stage in sorted({r.data.tags["stage"] for r in trials}):
            members = [r for r in trials if r.data.tags["stage"] == stage]
            wall += (max(ends[r.info.run_id] for r in members) - min(r.info.start_time for r in members)) / 1000
        busy = sum((ends[r.info.run_id] - r.info.start_time) / 1000 for r in trials)
    return {"trials": len(trials), "concurrency allowed": allowed, "command s": total, "trial phases s": wall,
            "ideal s": busy / allowed, "wall / ideal": wall / (busy / allowed), "mean trial s": busy / len(trials),
            "best val/acc": max(r.data.metrics.get("val/acc", 0.0) for r in trials)}


def main() -> None:
    import statistics

    args = arguments(__doc__, ("default-sweep",), trials=32, epochs=16, concurrent=2, grace=1, reduction=2, repeats=3)
    if args.default_sweep:
        rows = []
        for i in range(args.repeats):
            rows.append(default_sweep())
            print(f"repeat {i + 1}/{args.repeats}: wall / ideal {rows[-1]['wall / ideal']:.2f}", flush=True)
        print(table(rows))
        print(f"ratio: {statistics.median(r['wall / ideal'] for r in rows):.2f}")
        return
    rows = [sweep("none", args), sweep("asha", args)]
    full, asha = rows
    print(table(rows))
    print(f"ASHA: {full['epochs trained'] / max(asha['epochs trained'], 1):.2f}x less compute, "
          f"best val/acc {asha['best val/acc'] - full['best val/acc']:+.4f} ({(asha['best val/acc'] - full['best val/acc']) * 100:+.2f} points)")
    print(f"ratio: {full['epochs trained'] / max(asha['epochs trained'], 1):.3f}")


if __name__ == "__main__":
    main()
