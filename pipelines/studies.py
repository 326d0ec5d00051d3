"""Study runners: each `conf/study/NAME.yaml` names one of these as its `runner`.

A runner takes the plain config and the MLflow run tracker, logs its tables and plots, and
returns a summary to print.
"""
from __future__ import annotations

import csv
from pathlib import Path
import tempfile
from typing import Any

from pipelines import build
from pipelines.tracking import RunTracker


def init_study(config: dict[str, Any], tracker: RunTracker) -> str:
    """The lecture's weight-init figures: per-layer activation mean/std for each case."""
    from components.checks import plots
    from components.checks.init_study import layer_activations

    results: dict[str, list[dict]] = {}
    for case, parts in config["cases"].items():
        init = dict(parts["init"], bias=config["bias"])
        results[case] = layer_activations(
            build.make(parts["activation"]), build.make(init), config["depth"], config["width"], config["num_samples"], config["seed"]
        )
        for row in results[case]:
            tracker.client.log_metric(tracker.run_id, f"{case}/std", row["std"], step=row["layer"])
            tracker.client.log_metric(tracker.run_id, f"{case}/mean", row["mean"], step=row["layer"])
    header = f"{'layer':>5} " + " ".join(f"{c:>18}" for c in results)
    lines = [header, " " * 6 + " ".join(f"{'mean':>8} {'std':>9}" for _ in results)]
    for i in range(config["depth"]):
        lines.append(f"{i + 1:>5} " + " ".join(f"{r[i]['mean']:>8.3f} {r[i]['std']:>9.3g}" for r in results.values()))
    table = "\n".join(lines)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        with open(out / "init_study.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["case", "layer", "mean", "std"])
            for case, rows in results.items():
                writer.writerows([case, r["layer"], r["mean"], r["std"]] for r in rows)
        (out / "init_study.txt").write_text(table + "\n")
        paths = [out / "init_study.csv", out / "init_study.txt", plots.init_study(results, out / "init_study.png")]
        for path in paths:
            tracker.client.log_artifact(tracker.run_id, str(path))
        figure = Path(config["output_dir"]) / "studies" / "init_study.png"
        figure.parent.mkdir(parents=True, exist_ok=True)
        figure.write_bytes(paths[-1].read_bytes())
    return table + f"\n\nfigure: {figure}"
