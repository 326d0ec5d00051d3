"""Trained models by reference, shared by `ensemble` and `evaluate`: an MLflow run id, a zoo
reference (NAME, NAME@ALIAS, NAME/VERSION) or a sweep's best trials, each resolved to a local
bundle folder and the manifest digest it must match."""
from __future__ import annotations

from pathlib import Path
import re
from typing import Any

from mlflow.tracking import MlflowClient

from components.tracking import redact
from components.zoo.registry import BUNDLE_PATH, DIGEST_TAG, ZooError, ZooRef, fetch, recorded_digest
from pipelines.runtime.errors import UserError

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def sweep_members(client: MlflowClient, sweep: str, top_k: int, metric: str, key: str = "sweep") -> list[str]:
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, f"tags.sweep = '{sweep}' and tags.pipeline = 'tune-trial' and attributes.status = 'FINISHED'",
        order_by=[f"metrics.`{metric}` DESC"], max_results=top_k,
    )
    if not runs:
        raise UserError(key, f"no finished trial runs of a sweep named {sweep!r} in the tracking store.", "pass the name `raysitter tune` printed (tag `sweep` of its runs in the MLflow UI).")
    return [r.info.run_id for r in runs]


def member_bundle(client: MlflowClient, uri: str, member: str, workdir: Path, key: str = "members") -> tuple[Path, str, str]:
    """A local bundle folder for a run id or a zoo reference, its label, and the manifest
    digest it must match (recorded by the run as it logged the bundle, or by the registry)."""
    import mlflow.artifacts

    if RUN_ID.match(member):
        try:
            run = client.get_run(member)
        except Exception:
            raise UserError(key, f"run {member} is not in the tracking store {redact(uri)}.", "copy the run id from the MLflow UI or `raysitter train`'s summary.") from None
        names = [f.path for f in client.list_artifacts(member, BUNDLE_PATH)]
        if not names:
            raise UserError(key, f"run {member} has no {BUNDLE_PATH}/ artifact (it did not finish its last epoch, or ran with tracking.log_bundle=false).", "pick runs that finished training.")
        digest = run.data.tags.get(DIGEST_TAG)
        if not digest:
            raise UserError(key, f"run {member} recorded no digest of its bundle (tag {DIGEST_TAG}; runs logged "
                            "before raysitter recorded one), so its files cannot be trusted.",
                            "register it in the zoo (raysitter zoo push RUN_ID --name NAME, which checks it) and pass NAME/VERSION, or train it again.")
        path = mlflow.artifacts.download_artifacts(run_id=member, artifact_path=BUNDLE_PATH, dst_path=str(workdir / member), tracking_uri=uri)
        return Path(path), member[:8], digest
    try:
        ref = ZooRef.parse(member)
        path, version = fetch(uri, ref, workdir / "zoo")
        digest = recorded_digest(version, ref)
    except ZooError as e:
        raise UserError(key, f"{e}.", e.fix or "pass 32-character MLflow run ids or zoo references (`raysitter zoo list` shows the zoo).") from None
    return path, f"{version.name}/{version.version}", digest


def same_task(infos: list[dict[str, Any]], labels: list[str]) -> None:
    first = infos[0]
    for info, label in zip(infos[1:], labels[1:]):
        for key in ("data", "classes", "input_shape") + (() if (first.get("data") or {}).get("split_seed") is not None else ("seed",)):
            if info.get(key) != first.get(key):
                raise UserError(
                    "members",
                    f"{label} differs from {labels[0]} in {key} ({info.get(key)!r} vs {first.get(key)!r}); an ensemble is scored on one test split.",
                    "ensemble models trained on the same data and split (data.split_seed; e.g. the trials of one sweep, or runs that differ only in seed).",
                )
