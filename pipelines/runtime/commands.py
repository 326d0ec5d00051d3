"""raysitter's commands: the module that runs each, and its one-line help (the dispatcher
`pipelines.cli` and `raysitter submit` read this table)."""
from __future__ import annotations

PIPELINES = {
    "train": ("pipelines.train", "train a model on Ray Train, tracked in MLflow (Hydra app)"),
    "check": ("pipelines.check", "preflight checks: initial loss, regularisation, overfit a tiny subset, lr range test"),
    "tune": ("pipelines.tune", "Ray Tune random search in log space, coarse → fine, nested MLflow runs"),
    "study": ("pipelines.study", "run a named study from conf/study/ (init, random_vs_grid, transfer)"),
    "finetune": ("pipelines.finetune", "transfer learning from a zoo model: zoo=NAME@alias finetune.strategy=head|top|full (Hydra app)"),
    "ensemble": ("pipelines.ensemble", "average the predictions of runs, zoo models or a sweep's top-k (Hydra app)"),
    "evaluate": ("pipelines.evaluate", "score a zoo model, a run or a sweep's best trial on a split: accuracy, per-class metrics, confusion matrix (Hydra app)"),
    "zoo": ("pipelines.zoo", "model zoo on the MLflow registry: push RUN_ID --name N | list | pull NAME@alias"),
    "submit": ("pipelines.submit", "run any pipeline as a Ray job on a cluster: submit [--address URL] -- train …"),
    "jobs": ("pipelines.jobs", "a cluster's Ray jobs: list | logs ID [--follow] | stop ID"),
    "ui": ("pipelines.ui", "open the MLflow UI on the local store (127.0.0.1; Ctrl-C stops it)"),
    "server": ("pipelines.server", "an MLflow tracking server with proxied artifacts for a cluster's jobs"),
}

USAGE = "usage: raysitter PIPELINE [overrides…]\n\npipelines:\n" + "\n".join(
    f"  {name:<10} {help}" for name, (_, help) in PIPELINES.items()
) + "\n\nEach Hydra pipeline takes key=value overrides, -m for multirun, --cfg job, --help."
