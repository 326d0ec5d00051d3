"""The MLflow Model Registry as raysitter's model zoo.

A registered model version points at the run's MLflow Model of its bundle (`runs:/RUN/zoo_model`:
a python_function flavor read by components.zoo.pyfunc, the bundle in `zoo_model/data/bundle`;
versions registered before point at `runs:/RUN/bundle` itself); its tags carry what `zoo list` shows (dataset, classes, accuracy) and the sha256 of the bundle's
manifest (`raysitter.manifest_sha256`): the registry, not the artifact store, is what a pull
trusts. Pulling downloads the folder into a temporary sibling, checks the manifest against that
digest and every file against the manifest, and only then moves it into place; it never
replaces a folder that holds anything but an earlier pull of the same bundle.
"""
from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
import re
import shutil
import tempfile
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from components.zoo.bundle import INFO, MANIFEST, WEIGHTS, BundleError, manifest_digest, verify_bundle

BUNDLE_PATH = "bundle"  # the artifact folder of a run that holds its bundle
ZOO_MODEL_PATH = "zoo_model"  # the run's MLflow Model of that bundle: what a registered version points at
BUNDLE_PATH_TAG = "raysitter.bundle_path"  # on a version: the bundle's artifact path inside the run
DIGEST_TAG = "raysitter.manifest_sha256"  # on a registry version, and on the run that logged the bundle
BUNDLE_FILES = frozenset({WEIGHTS, INFO, MANIFEST})
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


ALIAS_RE = re.compile(r"^[A-Za-z0-9_-]+$")  # what MLflow's registry takes in an alias (no dots, unlike names)


def alias_problem(alias: str) -> str | None:
    """Why MLflow's registry would refuse `alias` (after a version was made, if asked then), or None."""
    if not ALIAS_RE.match(alias):
        return f"the alias {alias!r} has characters MLflow does not take in an alias (only letters, digits, _ and -)"
    if alias.lower() == "latest":
        return "the alias 'latest' is reserved by MLflow (it always means the newest version)"
    if re.fullmatch(r"[vV][0-9]+", alias):
        return f"the alias {alias!r} is reserved by MLflow (v1, v2, … name versions)"
    return None


class ZooError(RuntimeError):
    """A zoo reference that does not resolve, or a run without a bundle; `fix` says what to
    do when the generic advice (check the name) would not."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__(problem)
        self.fix = fix


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


def read_run_bundle(client: MlflowClient, run_id: str, tracking_uri: str, model_dir: bool = False) -> tuple[dict[str, Any], str]:
    """bundle.json of a run's bundle and its manifest digest, after verifying the whole bundle
    (and, when the run recorded one as it logged the bundle, the digest against that tag);
    `model_dir`: also log the run's MLflow Model of that verified bundle (`log_zoo_model`)."""
    import mlflow.artifacts

    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        raise ZooError(f"run {run_id} is not in the tracking store {tracking_uri} ({e.message})") from None
    names = [f.path for f in client.list_artifacts(run_id, BUNDLE_PATH)]
    if f"{BUNDLE_PATH}/{INFO}" not in names:
        raise ZooError(
            f"run {run_id} has no {BUNDLE_PATH}/ artifact: only runs that finished training with "
            "tracking.log_bundle=true carry one",
            "push a run of raysitter train or finetune, or a sweep's trial (not the sweep's own run, a check or a study); "
            f"the run's artifacts are listed in the MLflow UI under run {run_id}.",
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=BUNDLE_PATH, dst_path=tmp, tracking_uri=tracking_uri)
        info = verify_bundle(path, run.data.tags.get(DIGEST_TAG))
        digest = manifest_digest(path)
        if model_dir is not None:
            log_zoo_model(client, run_id, path, digest)
        return info, digest


def log_zoo_model(client: MlflowClient, run_id: str, bundle_dir: str, digest: str) -> None:
    """The run's MLflow Model of its bundle (`ZOO_MODEL_PATH/`: MLmodel with a python_function
    flavor, the bundle under `data/`), logged once: a run that has one keeps it untouched."""
    existing = {f.path for f in client.list_artifacts(run_id, ZOO_MODEL_PATH)}
    if f"{ZOO_MODEL_PATH}/MLmodel" in existing:
        return
    from components.zoo.pyfunc import save_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / ZOO_MODEL_PATH
        inner = save_model(bundle_dir, folder)
        if manifest_digest(folder / inner) != digest:  # the copy is the verified bundle, byte for byte
            raise ZooError(f"run {run_id}: the bundle copied into its MLflow Model does not match the verified one")
        client.log_artifacts(run_id, str(folder), ZOO_MODEL_PATH)


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
    if not NAME_RE.match(name):
        raise ZooError(f"the name {name!r} cannot be registered", "use letters, digits, _ . - (starting with a letter or digit).")
    problem = alias_problem(alias) if alias is not None else None
    if problem:
        raise ZooError(problem, "pick another alias, e.g. champion.")
    info, digest = read_run_bundle(client, run_id, tracking_uri, model_dir=True)
    try:
        client.get_registered_model(name)
    except MlflowException as e:
        if not _missing(e):
            raise
        client.create_registered_model(name, description="raysitter model zoo entry (bundle: safetensors + manifest)")
    version = client.create_model_version(
        name, f"runs:/{run_id}/{ZOO_MODEL_PATH}", run_id=run_id,
        tags={**version_tags(info), DIGEST_TAG: digest, BUNDLE_PATH_TAG: f"{ZOO_MODEL_PATH}/data/bundle"},
        description=f"raysitter zoo model of run {run_id}: an MLflow Model (python_function flavor, loaded by "
                    "components.zoo.pyfunc from the safetensors bundle in data/bundle; nothing unpickled)",
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


def recorded_digest(version: Any, ref: ZooRef) -> str:
    """The manifest digest the registry holds for `version`; refuses versions without one."""
    digest = (version.tags or {}).get(DIGEST_TAG)
    if not digest:
        raise ZooError(
            f"{ref.name}/{version.version} has no recorded manifest digest ({DIGEST_TAG}): it was registered before "
            "raysitter recorded one, or by another tool, so its files cannot be trusted",
            f"re-register it with `raysitter zoo push {version.run_id} --name {ref.name}` (which verifies the bundle "
            "and records its digest) and use the new version.",
        )
    return digest


def replaceable(folder: Path, digest: str, owned: bool) -> bool:
    """Whether `folder` may be replaced by a pull: it does not exist, is empty, or holds only a
    bundle's files that are an earlier pull of this very bundle (its manifest has the recorded
    digest), or, when raysitter `owned` the folder (its own cache), an unreadable earlier pull."""
    if not folder.exists():
        return True
    if not folder.is_dir() or folder.is_symlink():
        return False
    entries = list(folder.iterdir())
    if not entries:
        return True
    if any(e.name not in BUNDLE_FILES or not e.is_file() or e.is_symlink() for e in entries):
        return False
    try:
        return owned or manifest_digest(folder) == digest
    except BundleError:
        return owned


def pull(client: MlflowClient, tracking_uri: str, ref: ZooRef, dest: str | os.PathLike, owned: bool = False) -> tuple[Path, Any]:
    """Downloads the bundle `ref` names into `dest` after verifying it in a temporary sibling
    folder against the registry's digest: a failed check leaves `dest` as it was. `dest` must
    be new, empty, or an earlier pull of the same bundle (`owned`: raysitter's own cache
    folder, which may also hold a damaged earlier pull); anything else is refused untouched."""
    import mlflow.artifacts

    version = resolve(client, ref)
    run_id = version.run_id
    if not run_id or not str(version.source).startswith("runs:/"):
        raise ZooError(f"{ref} (version {version.version}) does not point at a raysitter bundle (source {version.source})")
    digest = recorded_digest(version, ref)
    # the bundle inside the version's MLflow Model; versions registered before point at the bundle itself
    artifact_path = (version.tags or {}).get(BUNDLE_PATH_TAG) or (
        str(version.source).split("/", 2)[2] if str(version.source).count("/") >= 2 else BUNDLE_PATH)
    target = Path(dest)
    if not replaceable(target, digest, owned):
        raise ZooError(
            f"the destination {target} is not empty and is not an earlier pull of {ref.name}/{version.version}; "
            "nothing in it was changed",
            "pass a new or empty folder with --dest (or leave --dest out for OUTPUT_DIR/zoo/NAME/vVERSION).",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=str(tmp), tracking_uri=tracking_uri)
        verify_bundle(local, digest)
        if target.exists():  # checked above: empty, or only this bundle's files
            shutil.rmtree(target)
        os.replace(local, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, version


def fetch(tracking_uri: str, ref: str | ZooRef, cache_root: str | os.PathLike) -> tuple[Path, Any]:
    """A verified local copy of `ref` under `cache_root/NAME/vVERSION`, downloaded once and
    checked against the registry's digest on every call."""
    ref = ZooRef.parse(ref) if isinstance(ref, str) else ref
    client = MlflowClient(tracking_uri)
    version = resolve(client, ref)
    digest = recorded_digest(version, ref)
    target = Path(cache_root) / ref.name / f"v{version.version}"
    try:
        verify_bundle(target, digest)
        return target, version
    except BundleError:
        pass  # not cached yet, or the cached copy is damaged: download it again
    path, _ = pull(client, tracking_uri, ZooRef(ref.name, version=str(version.version)), target, owned=True)
    return path, version
