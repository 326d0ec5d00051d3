"""Where Ray Train keeps a run's checkpoints: `trainer.storage_path`, a local (or shared) folder,
by default `OUTPUT_DIR/ray_results`, or `s3://bucket/prefix` on any S3-compatible store.

For S3 the endpoint is `trainer.storage_endpoint` (else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL;
none: AWS itself) and the credentials and region are the usual AWS ones (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role; AWS_REGION). Ray Train writes each
checkpoint there from the worker that made it and restores from there, so no node needs a shared
disk. The checks run before Ray starts: an unreachable store or a missing bucket is refused."""
from __future__ import annotations

import os
from pathlib import Path
import re
from typing import Any
from urllib.parse import urlsplit

from pipelines.runtime.errors import UserError

SCHEME = "s3://"


def is_remote(path: str | None) -> bool:
    return bool(path) and str(path).startswith(SCHEME)


def not_an_address(path: str) -> str:
    """Why `path`, meant as a folder or an s3:// location, is neither: an address with a slash
    missing (s3:/bucket, s3:bucket: as it stands, a local folder named so) or with another
    scheme; empty when it is one of them."""
    if "://" not in str(path):
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", str(path)):
            return "looks like an address with a slash missing; as it stands it would be a local folder named so"
        return ""
    return "" if is_remote(path) else "is neither a folder nor an s3:// location"


def not_a_folder(path: Path, writable: bool = True) -> str:
    """Why `path` cannot be (made) a folder: a file where it or a folder above it should be, or
    (`writable`) the nearest existing folder not writable here; empty when it can. Nothing is
    created."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return ""
    if not existing.is_dir():
        return "is a file, not a folder" if existing == path else f"lies below {existing}, which is a file"
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        return "is a folder you cannot write" if existing == path else f"would be made in {existing}, which you cannot write"
    return ""


def endpoint(trainer: dict[str, Any]) -> str | None:
    return trainer.get("storage_endpoint") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def filesystem(trainer: dict[str, Any], quick: bool = False) -> Any:
    """pyarrow's S3 filesystem for `trainer` (what Ray Train's `storage_filesystem` takes).
    `quick`: short timeouts and one retry, for the check before a run."""
    import pyarrow.fs

    kwargs: dict[str, Any] = {}
    url = endpoint(trainer)
    if url:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        kwargs.update(endpoint_override=parts.netloc, scheme=parts.scheme or "https")
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:  # travel with the filesystem to every worker (pickled in Ray's task payload, not its dashboard)
        kwargs.update(access_key=key, secret_key=secret, session_token=os.environ.get("AWS_SESSION_TOKEN"))
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    if quick:
        kwargs.update(connect_timeout=3, request_timeout=5, retry_strategy=pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=1))
    return pyarrow.fs.S3FileSystem(**kwargs)


def ray_storage(config: dict[str, Any]) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for Ray Train's RunConfig."""
    trainer = config["trainer"]
    path = trainer.get("storage_path")
    if is_remote(path):
        return str(path)[len(SCHEME):].rstrip("/"), filesystem(trainer)
    return str(path or Path(config["output_dir"]) / "ray_results"), None


def uri(path: str, remote: bool) -> str:
    """A checkpoint's address as a user reads it (`s3://bucket/…` or the local folder)."""
    return f"{SCHEME}{path}" if remote and not path.startswith(SCHEME) else path


def check(config: dict[str, Any]) -> None:
    """`trainer.storage_path` as given (a folder is the caller's to make absolute and check):
    an address must be s3:// with both slashes, and its bucket must exist and answer (a
    listing, nothing written). Raises UserError."""
    trainer = config["trainer"]
    path = trainer.get("storage_path")
    if not path:
        return
    why = not_an_address(path)
    if why and "://" not in str(path):
        raise UserError("trainer.storage_path", f"{path!r} {why}.", "write s3://BUCKET/PREFIX, or a folder path.")
    if why:
        raise UserError("trainer.storage_path", f"{path!r} {why}.",
                        "pass s3://BUCKET/PREFIX (any S3-compatible store; endpoint in trainer.storage_endpoint or "
                        "AWS_ENDPOINT_URL) or a folder every node can reach; leave it unset for OUTPUT_DIR/ray_results.")
    if is_remote(path):
        check_bucket("trainer.storage_path", str(path), trainer)


def check_bucket(key: str, path: str, trainer: dict[str, Any]) -> None:
    """The bucket of s3:// `path` exists and answers a listing (nothing is written); `trainer`
    holds the endpoint (`storage_endpoint`). Raises UserError naming `key`."""
    import pyarrow.fs

    bucket = path[len(SCHEME):].split("/", 1)[0]
    where = f"at {endpoint(trainer)}" if endpoint(trainer) else "on AWS"
    fix = ("check the bucket name, the endpoint (trainer.storage_endpoint or AWS_ENDPOINT_URL) and the credentials "
           "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE).")
    if not bucket:
        raise UserError(key, f"{path!r} names no bucket.", "write s3://BUCKET/PREFIX.")
    try:
        info = filesystem(trainer, quick=True).get_file_info(bucket)
    except (OSError, ValueError) as e:
        raise UserError(key, f"the S3 store {where} does not answer for bucket {bucket!r} ({' '.join(str(e).split())[:200]}).", fix) from None
    if info.type == pyarrow.fs.FileType.NotFound:
        raise UserError(key, f"bucket {bucket!r} does not exist {where}.", f"create it first, or {fix}")


def download_checkpoints(latest: Any, dest: str) -> str:
    """The run's kept checkpoints from remote storage into `dest` (the newest one may be cut
    short: pipelines.runtime.worker then falls back to the one before); returns the latest's copy."""
    import pyarrow.fs

    fs, parent = latest.filesystem, latest.path.rstrip("/").rsplit("/", 1)[0]
    for info in fs.get_file_info(pyarrow.fs.FileSelector(parent)):
        if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_"):
            target = Path(dest) / info.base_name
            target.mkdir(parents=True, exist_ok=True)
            pyarrow.fs.copy_files(info.path, str(target), source_filesystem=fs, destination_filesystem=pyarrow.fs.LocalFileSystem())
    return str(Path(dest) / latest.path.rstrip("/").rsplit("/", 1)[-1])
