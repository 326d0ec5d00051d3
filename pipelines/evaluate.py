"""raysitter evaluate: score a trained model on a dataset split, as its own MLflow run.

    raysitter evaluate zoo=digits04@champion                  # its own data config, test split
    raysitter evaluate run=RUN_ID split=val
    raysitter evaluate sweep=NAME                             # a sweep's best trial (by val/acc)
    raysitter evaluate zoo=digits04/2 data=image_folder data.root=~/photos

The model's bundle is downloaded and verified (the registry's digest for a zoo reference, the
run's own for a run id). Without `data=…` the model is scored on its own data config and split
(the split it never trained on); with one, on that dataset, which must have the model's input
shape and class names. Logged: `eval/acc`, `eval/loss`, per-class precision, recall and F1,
the confusion matrix (CSV and PNG), and tags linking the run to the model it evaluated.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path
import tempfile
import time
from typing import Any

from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
import torch

from components.zoo import BundleError, load_bundle
from pipelines.runtime import build, validate
from pipelines.runtime.app import hydra_app
from pipelines.runtime.errors import UserError
from pipelines.runtime.models import RUN_ID, member_bundle, sweep_members
from pipelines.runtime.tracking import tracked_run

SPLITS = ("test", "val", "train")


def reference(config: dict[str, Any], client: MlflowClient) -> tuple[str, str]:
    """(what to load: a zoo reference or run id, how the run names it)."""
    given = {k: config.get(k) for k in ("zoo", "run", "sweep") if config.get(k) not in (None, "")}
    if len(given) != 1:
        raise UserError("zoo/run/sweep", f"name exactly one model to evaluate (got {', '.join(f'{k}={v}' for k, v in given.items()) or 'none'}).",
                        "pass zoo=NAME@ALIAS (or NAME/VERSION), run=RUN_ID, or sweep=NAME (its best trial).")
    (key, value), = given.items()
    if key == "sweep":
        (best,) = sweep_members(client, str(value), 1, "val/acc")
        return best, f"sweep {value} (best trial, run {best})"
    if key == "run" and not RUN_ID.match(str(value)):
        raise UserError("run", f"{value!r} is not an MLflow run id (32 hexadecimal characters).", "copy it from the MLflow UI or `raysitter train`'s summary.")
    return str(value), f"{key} {value}"


def dataset(config: dict[str, Any], info: dict[str, Any]) -> tuple[Any, dict[str, Any], int]:
    """The split to score on and the data config it came from: the model's own, or `data=…`
    (checked: same input shape and class names as the model)."""
    if not config.get("data"):
        data, seed = info["data"], int(info.get("seed", 0))
    else:
        validate.check_data(config)
        data, seed = config["data"], int(config.get("seed", 0))
    splits = build.load_splits(data, seed)
    if list(splits.input_shape) != list(info["input_shape"]):
        raise UserError("data", f"gives images of shape {list(splits.input_shape)}, but the model takes {info['input_shape']}.",
                        "evaluate on data of the model's shape (image folders: data.image_size), or leave data out to use the model's own.")
    if [str(c) for c in splits.classes] != [str(c) for c in info["classes"]]:
        raise UserError("data", f"has the classes {list(splits.classes)}, but the model predicts {list(info['classes'])}.",
                        "pick the same classes (e.g. data.classes=[…]) so labels mean the same, or leave data out to use the model's own.")
    return getattr(splits, config["split"]), data, seed


def scores(net: torch.nn.Module, normalizer: Any, split: Any, num_classes: int) -> tuple[dict[str, float], torch.Tensor]:
    """Accuracy, mean cross-entropy and the confusion matrix (rows: true class)."""
    from components.engine.loop import to_float

    matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loss, data = 0.0, split.sample()
    with torch.no_grad():
        for start in range(0, len(data), 512):
            x, y = to_float(data.x[start : start + 512]), data.y[start : start + 512]
            logits = net(normalizer(x))
            loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            matrix += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes**2).reshape(num_classes, num_classes)
    n = int(matrix.sum())
    return {"eval/acc": int(matrix.diag().sum()) / max(n, 1), "eval/loss": loss / max(n, 1), "eval/images": float(n)}, matrix


def per_class(matrix: torch.Tensor, classes: list[str]) -> list[dict[str, Any]]:
    rows = []
    for i, name in enumerate(classes):
        tp, predicted, actual = int(matrix[i, i]), int(matrix[:, i].sum()), int(matrix[i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": actual})
    return rows


def evaluate(cfg: DictConfig) -> dict[str, float]:
    from components.diagnostics import plots

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    config = validate.resolve(cfg)
    validate.check_values(config)
    if config["split"] not in SPLITS:
        raise UserError("split", f"must be one of {', '.join(SPLITS)} (got {config['split']!r}).", "pass split=test (or val, train).")
    config["output_dir"] = validate.absolute(config["output_dir"])
    validate.check_tracking(config, must_exist=True)
    uri = config["tracking"]["uri"]
    client = MlflowClient(uri, registry_uri=uri)
    started = time.perf_counter()
    target, described = reference(config, client)
    with tempfile.TemporaryDirectory(prefix="raysitter-evaluate-") as tmp:
        key = "run" if config.get("run") or config.get("sweep") else "zoo"
        path, label, digest = member_bundle(client, uri, target, Path(tmp), key=key)
        try:
            net, normalizer, info = load_bundle(path, digest)
        except BundleError as e:
            raise BundleError(f"the bundle of {label} failed verification: {e}") from None
    split, data, seed = dataset(config, info)
    classes = [str(c) for c in info["classes"]]
    metrics, matrix = scores(net, normalizer, split, len(classes))
    rows = per_class(matrix, classes)
    for row in rows:
        for field in ("precision", "recall", "f1"):
            metrics[f"eval/class/{row['class']}/{field}"] = row[field]
    source = info.get("source", {})
    overrides = list(HydraConfig.get().overrides.task)
    tags = {"pipeline": "evaluate", "command": " ".join(["raysitter", "evaluate", *overrides]), "evaluate.model": label,
            "evaluate.split": config["split"], "evaluate.source_run_id": str(source.get("run_id", "")),
            "evaluate.source_epoch": str(source.get("epoch", ""))}
    if config.get("zoo"):
        tags["evaluate.model_uri"] = f"models:/{label}"
    name = config["tracking"].get("run_name") or f"evaluate-{label.replace('/', '-v')}-{config['split']}" + time.strftime("-%Y%m%d-%H%M%S")
    with tracked_run(config, name, tags) as tracker:
        tracker.log_config({**config, "data": data, "seed": seed})
        tracker.log_dataset({"data": data}, (HydraConfig.get().runtime.choices.get("data") or "model's own"), None, len(classes))
        tracker.log_metrics(metrics)
        link = ""
        if source.get("run_id"):
            try:
                run = client.get_run(source["run_id"])
                link = f" ([source run](#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}))"
            except Exception:  # a bundle from another store: the id is still in the tag
                pass
        tracker.client.set_tag(tracker.run_id, "mlflow.note.content",
                               f"**evaluate** {described}{link}, epoch {source.get('epoch', '?')} weights, on the {config['split']} split "
                               f"({int(metrics['eval/images'])} images): accuracy **{metrics['eval/acc']:.4f}**, loss {metrics['eval/loss']:.4f}.")
        with tempfile.TemporaryDirectory() as out:
            folder = Path(out)
            with open(folder / "per_class.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
            with open(folder / "confusion_matrix.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["true\\predicted", *classes])
                writer.writerows([c, *matrix[i].tolist()] for i, c in enumerate(classes))
            plots.confusion_matrix(matrix, classes, folder / "confusion_matrix.png", title=f"confusion matrix ({config['split']} split)")
            tracker.client.log_artifacts(tracker.run_id, str(folder))
    print(f"{label} on the {config['split']} split ({int(metrics['eval/images'])} images): accuracy {metrics['eval/acc']:.4f}   loss {metrics['eval/loss']:.4f}")
    print(f"{'class':>10} {'precision':>10} {'recall':>8} {'f1':>8} {'support':>8}")
    for row in rows:
        print(f"{row['class']:>10} {row['precision']:>10.4f} {row['recall']:>8.4f} {row['f1']:>8.4f} {row['support']:>8}")
    print(f"MLflow run   {tracker.run_id}  ({tracker.shown})   {time.perf_counter() - started:.1f} s", flush=True)
    return metrics


@hydra_app("evaluate")
def main(cfg: DictConfig) -> float:
    return evaluate(cfg)["eval/acc"]


def evaluate_cli(overrides: list[str]) -> dict[str, float]:
    """`raysitter evaluate …` in-process, returning its metrics (what tests and tools call)."""
    found: dict[str, float] = {}
    hydra_app("evaluate")(lambda cfg: found.update(evaluate(cfg)))(overrides, prog="raysitter evaluate")
    return found


if __name__ == "__main__":
    main()
