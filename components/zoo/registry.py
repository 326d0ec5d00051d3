"""The MLflow Model Registry as raysitter's model zoo.

A registered model version points at a run's `bundle/` artifact folder (`runs:/RUN/bundle`);
its tags carry what `zoo list` shows (dataset, classes, accuracy). Pulling downloads the
folder, verifies every hash, and only then moves it into place.
"""
from __future__ import annotations

from dataclasses import dataclass
import json
import os
from pathlib import Path
import re
import shutil
import tempfile
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from components.zoo.bundle import INFO, BundleError, verify_bundle

BUNDLE_PATH = "bundle"  # the artifact folder of a run that holds its bundle
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ZooError(RuntimeError):
    """A zoo reference that does not resolve, or a run without a bundle."""


@dataclass(frozen=True)
class ZooRef:
    """`NAME`, `NAME@ALIAS` or `NAME/VERSION`."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ZooRef:
        text = str(text).strip()
        if "@" in text:
            name, alias = text.split("@", 1)
            ref = cls(name, alias=alias)
        elif "/" in text:
            name, version = text.split("/", 1)
            if not version.isdigit():
                raise ZooError(f"{text!r}: the version after '/' must be a number (e.g. {name}/3)")
            ref = cls(name, version=version)
        else:
            ref = cls(text)
        if not NAME_RE.match(ref.name) or (ref.alias is not None and not NAME_RE.match(ref.alias)):
            raise ZooError(f"{text!r} is not a zoo reference: use NAME, NAME@ALIAS or NAME/VERSION (letters, digits, _ . -)")
        return ref

    def __str__(self) -> str:
        return self.name + (f"@{self.alias}" if self.alias else f"/{self.version}" if self.version else "")


def _missing(e: MlflowException) -> bool:
    return e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(e).lower()


def resolve(client: MlflowClient, ref: ZooRef) -> Any:
    """The ModelVersion a reference names (bare NAME: the newest version)."""
    try:
        if ref.alias:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        if ref.version:
            return client.get_model_version(ref.name, ref.version)
        versions = client.search_model_versions(f"name = '{ref.name}'")
    except MlflowException as e:
        if _missing(e):
            raise ZooError(f"{ref} is not in the zoo ({e.message})") from None
        raise
    if not versions:
        raise ZooError(f"{ref} is not in the zoo (no registered model of that name)")
    return max(versions, key=lambda v: int(v.version))


def read_run_info(client: MlflowClient, run_id: str, tracking_uri: str) -> dict[str, Any]:
    """bundle.json of a run's bundle (downloads only that file)."""
    import mlflow.artifacts

    try:
        client.get_run(run_id)
    except MlflowException as e:
        raise ZooError(f"run {run_id} is not in the tracking store {tracking_uri} ({e.message})") from None
    names = [f.path for f in client.list_artifacts(run_id, BUNDLE_PATH)]
    if f"{BUNDLE_PATH}/{INFO}" not in names:
        raise ZooError(
            f"run {run_id} has no {BUNDLE_PATH}/ artifact: only runs that finished training with "
            "tracking.log_bundle=true carry one"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{BUNDLE_PATH}/{INFO}", dst_path=tmp, tracking_uri=tracking_uri)
        return json.loads(Path(path).read_text())


def version_tags(info: dict[str, Any]) -> dict[str, str]:
    data = info.get("data") or {}
    metrics = info.get("metrics", {})
    tags = {
        "dataset": str(data.get("_target_", "?")).rsplit(".", 1)[-1].removesuffix("Source").lower(),
        "classes": ",".join(info["classes"]),
        "num_classes": str(len(info["classes"])),
        "model": str(info["model"].get("_target_", "?")).rsplit(".", 1)[-1],
        "input_shape": "x".join(str(s) for s in info["input_shape"]),
    }
    for key in ("val/acc", "test/acc"):
        if key in metrics:
            tags[key.replace("/", "_")] = f"{metrics[key]:.4f}"
    return tags


def push(client: MlflowClient, tracking_uri: str, run_id: str, name: str, alias: str | None = None) -> Any:
    """Registers a run's bundle as a new version of `name` (created if needed); sets `alias`."""
    if not NAME_RE.match(name) or (alias is not None and not NAME_RE.match(alias)):
        raise ZooError(f"zoo name {name!r} / alias {alias!r}: use letters, digits, _ . - (starting with a letter or digit)")
    if alias is not None and alias.lower() == "latest":
        raise ZooError("the alias 'latest' is reserved by MLflow; pick another (e.g. champion)")
    info = read_run_info(client, run_id, tracking_uri)
    try:
        client.get_registered_model(name)
    except MlflowException as e:
        if not _missing(e):
            raise
        client.create_registered_model(name, description="raysitter model zoo entry (bundle: safetensors + manifest)")
    version = client.create_model_version(
        name, f"runs:/{run_id}/{BUNDLE_PATH}", run_id=run_id, tags=version_tags(info),
        description=f"bundle of run {run_id}",
    )
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return client.get_model_version(name, version.version)


def list_versions(client: MlflowClient, name: str | None = None) -> list[Any]:
    """Every version of every registered model (or of `name`), newest first per model."""
    names = [name] if name else [rm.name for rm in client.search_registered_models()]
    versions = []
    for model in names:
        try:
            # search results leave `aliases` empty: get_model_version fills them in
            versions += [client.get_model_version(model, v.version) for v in client.search_model_versions(f"name = '{model}'")]
        except MlflowException as e:
            if not _missing(e):
                raise
    return sorted(versions, key=lambda v: (v.name, -int(v.version)))


def pull(client: MlflowClient, tracking_uri: str, ref: ZooRef, dest: str | os.PathLike) -> tuple[Path, Any]:
    """Downloads the bundle `ref` names into `dest` (replacing it) after verifying every hash
    in a temporary folder: a failed check leaves `dest` as it was."""
    import mlflow.artifacts

    version = resolve(client, ref)
    run_id = version.run_id
    if not run_id or not str(version.source).startswith("runs:/"):
        raise ZooError(f"{ref} (version {version.version}) does not point at a raysitter bundle (source {version.source})")
    artifact_path = str(version.source).split("/", 2)[2] if str(version.source).count("/") >= 2 else BUNDLE_PATH
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=str(tmp), tracking_uri=tracking_uri)
        verify_bundle(local)
        if target.exists():
            shutil.rmtree(target)
        os.replace(local, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, version


def fetch(tracking_uri: str, ref: str | ZooRef, cache_root: str | os.PathLike) -> tuple[Path, Any]:
    """A verified local copy of `ref` under `cache_root/NAME/vVERSION`, downloaded once."""
    ref = ZooRef.parse(ref) if isinstance(ref, str) else ref
    client = MlflowClient(tracking_uri)
    version = resolve(client, ref)
    target = Path(cache_root) / ref.name / f"v{version.version}"
    try:
        verify_bundle(target)
        return target, version
    except BundleError:
        pass  # not cached yet, or the cached copy is damaged: download it again
    path, _ = pull(client, tracking_uri, ZooRef(ref.name, version=str(version.version)), target)
    return path, version
