"""raysitter ensemble: model ensembles from runs, zoo models or a sweep's top-k.

Each member's bundle is downloaded and verified; all members must share the dataset, classes
and seed (so they are scored on the same test split, which none of them trained on). Prints and
logs every member's val/test accuracy, the ensemble's (mean of the softmax probabilities) and
the gain over the best and the average single model.
"""
from __future__ import annotations

import logging
from pathlib import Path
import tempfile
import time

from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from components.zoo import BundleError, load_bundle
from pipelines.runtime import build, validate
from pipelines.runtime.app import hydra_app
from pipelines.runtime.errors import UserError
from pipelines.runtime.models import member_bundle, same_task, sweep_members
from pipelines.runtime.tracking import tracked_run

def ensemble(cfg: DictConfig) -> dict[str, float]:
    from rich.console import Console
    from rich.table import Table

    from components.ensembling import EnsembleForward, evaluate_forward

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    config = validate.resolve(cfg)
    validate.check_values(config)
    config["output_dir"] = validate.absolute(config["output_dir"])
    validate.check_tracking(config, must_exist=True)
    uri = config["tracking"]["uri"]
    client = MlflowClient(uri, registry_uri=uri)
    members = [str(m) for m in config["members"] or []]
    if config.get("sweep"):
        if not isinstance(config["top_k"], int) or config["top_k"] < 1:
            raise UserError("top_k", f"must be a whole number ≥ 1 (got {config['top_k']!r}).", "pass e.g. top_k=3.")
        members += sweep_members(client, str(config["sweep"]), config["top_k"], config["metric"])
    if len(members) < 2:
        raise UserError("members", f"an ensemble needs at least two models (got {len(members)}).", "pass members=[RUN_ID,RUN_ID,…] and/or sweep=NAME.")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="raysitter-ensemble-") as tmp:
        loaded, labels, seen = [], [], {}
        for member in members:
            path, label, digest = member_bundle(client, uri, member, Path(tmp))
            if digest and digest in seen:  # one bundle twice: a run and its zoo version, two versions of one run, …
                raise UserError("members", f"{seen[digest]} and {label} are the same model (one bundle, manifest digest "
                                           f"{digest[:12]}…): an ensemble of copies predicts as that one model does.",
                                "list each model once (a sweep's top_k trials already count as members).")
            seen[digest] = label
            try:
                loaded.append(load_bundle(path, digest))
            except BundleError as e:
                raise BundleError(f"the bundle of {label} failed verification: {e}") from None
            labels.append(label)
    infos = [info for _, _, info in loaded]
    same_task(infos, labels)
    splits = build.load_splits(infos[0]["data"], infos[0].get("seed", 0))
    rows, metrics = [], {}
    for i, ((net, normalizer, _), label) in enumerate(zip(loaded, labels)):
        forward = lambda x, net=net, normalizer=normalizer: net(normalizer(x))  # noqa: E731
        val, test = evaluate_forward(forward, splits.val)["acc"], evaluate_forward(forward, splits.test)["acc"]
        rows.append((label, val, test))
        metrics[f"member/{i}/val/acc"], metrics[f"member/{i}/test/acc"] = val, test
    combined = EnsembleForward([n for n, _, _ in loaded], [nz for _, nz, _ in loaded])
    ens_val, ens_test = (evaluate_forward(combined, s) for s in (splits.val, splits.test))
    best = max(rows, key=lambda r: r[1])  # the member a user would pick: best on validation
    mean_test = sum(r[2] for r in rows) / len(rows)
    metrics.update({
        "ensemble/val/acc": ens_val["acc"], "ensemble/test/acc": ens_test["acc"], "ensemble/test/loss": ens_test["loss"],
        "single/best_by_val/test/acc": best[2], "single/mean/test/acc": mean_test,
        "ensemble/gain_over_best": ens_test["acc"] - best[2], "ensemble/gain_over_mean": ens_test["acc"] - mean_test,
        "ensemble/size": float(len(rows)),
    })
    overrides = list(HydraConfig.get().overrides.task)
    tags = {"pipeline": "ensemble", "command": " ".join(["raysitter", "ensemble", *overrides]), "ensemble.members": ",".join(labels)}
    name = config["tracking"].get("run_name") or f"ensemble-{len(rows)}" + time.strftime("-%Y%m%d-%H%M%S")
    with tracked_run(config, name, tags) as tracker:
        tracker.log_config({**config, "members": members})
        tracker.log_metrics(metrics)
        table = Table(title=f"ensemble of {len(rows)} ({len(splits.test)} test images)")
        for column in ("member", "val/acc", "test/acc"):
            table.add_column(column)
        for label, val, test in rows:
            table.add_row(label, f"{val:.4f}", f"{test:.4f}")
        table.add_row("[bold]ensemble (mean softmax)", f"{ens_val['acc']:.4f}", f"[bold]{ens_test['acc']:.4f}")
        console = Console(width=120, record=True)
        console.print(table)
        console.print(f"gain over the best single model (by val/acc): {metrics['ensemble/gain_over_best']:+.4f}   "
                      f"over the average single model: {metrics['ensemble/gain_over_mean']:+.4f}")
        tracker.client.log_text(tracker.run_id, console.export_text(), "ensemble.txt")
    print(f"MLflow run   {tracker.run_id}  ({tracker.shown})   {time.perf_counter() - started:.1f} s", flush=True)
    return metrics


@hydra_app("ensemble")
def main(cfg: DictConfig) -> float:
    return ensemble(cfg)["ensemble/test/acc"]


if __name__ == "__main__":
    main()
