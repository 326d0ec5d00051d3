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
"""
from __future__ import annotations

import subprocess
import tempfile
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


def main() -> None:
    args = arguments(__doc__, trials=32, epochs=16, concurrent=2, grace=1, reduction=2)
    rows = [sweep("none", args), sweep("asha", args)]
    full, asha = rows
    print(table(rows))
    print(f"ASHA: {full['epochs trained'] / max(asha['epochs trained'], 1):.2f}x less compute, "
          f"best val/acc {asha['best val/acc'] - full['best val/acc']:+.4f} ({(asha['best val/acc'] - full['best val/acc']) * 100:+.2f} points)")
    print(f"ratio: {full['epochs trained'] / max(asha['epochs trained'], 1):.3f}")


if __name__ == "__main__":
    main()
