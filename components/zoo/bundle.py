"""The model-zoo bundle: a folder that carries everything needed to use a trained network.

    model.safetensors   the weights (safetensors: loading runs no code)
    bundle.json         model config, input shape, class names, preprocessing statistics
                        (mean/std, per channel or global), data config, training metrics, source
    manifest.json       sha256 and size of every other file

Written atomically (a temporary sibling folder, then one rename). `load_bundle` verifies every
hash before it reads a single weight; a bundle that fails is never loaded.

Trust: the manifest vouches for the files beside it, but a consistent rewrite of files and
manifest passes that check, so the sha256 of manifest.json itself (`manifest_digest`) is recorded
where the bundle is registered (the model-registry version, or the run's tag) and every load
compares it first. And bundle.json only ever builds classes of `ALLOWED_TARGETS` (raysitter's
models, their activations and its data sources): a `_target_` naming anything else is refused
before anything is instantiated.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import time
from typing import Any

import torch
from torch import nn
from safetensors.torch import load_file, save_file

from components.engine.checkpoint import atomic_directory
from components.legacy import current_targets

FORMAT = "raysitter-bundle/1"
WEIGHTS, INFO, MANIFEST = "model.safetensors", "bundle.json", "manifest.json"


class BundleError(RuntimeError):
    """A bundle is missing, incomplete, tampered with or of an unknown format."""


# What a bundle's model and data config may build (conf/model/**, conf/data/*; tests/test_zoo.py
# checks that every option there is listed). Nothing else is instantiated from a bundle.
ALLOWED_TARGETS = frozenset({
    "components.model.MLP", "components.model.ConvNet", "components.model.ResNet", "components.model.Maxout",
    "torch.nn.ReLU", "torch.nn.ELU", "torch.nn.LeakyReLU", "torch.nn.PReLU", "torch.nn.Sigmoid", "torch.nn.Tanh",
    "components.data.DigitsSource", "components.data.CIFAR10Source", "components.data.ImageFolderSource",
    "components.data.SyntheticSource",
})


def targets(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (key path, `_target_` value) in a nested config of dicts and lists."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                found.append((where, value))
            else:
                found += targets(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += targets(value, f"{path}[{i}]")
    return found


def check_targets(node: Any, allowed: frozenset[str] = ALLOWED_TARGETS, what: str = "bundle.json") -> None:
    """Raises BundleError unless every `_target_` in `node` is one of `allowed`."""
    foreign = [(where, value) for where, value in targets(node) if value not in allowed]
    if foreign:
        listed = ", ".join(f"{where}={value!r}" for where, value in foreign[:3])
        raise BundleError(f"{what} names code that is not one of raysitter's model or data classes ({listed}); "
                          "nothing was instantiated")


def manifest_digest(directory: str | os.PathLike) -> str:
    """The sha256 of manifest.json: one digest that pins every file of the bundle."""
    try:
        return sha256(Path(directory) / MANIFEST)
    except OSError as e:
        raise BundleError(f"{directory}: cannot read {MANIFEST} ({e})") from e


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_bundle(directory: str | os.PathLike, weights: dict[str, torch.Tensor], info: dict[str, Any]) -> Path:
    """Writes weights + info + manifest into `directory` (replacing it) atomically."""
    for key in ("model", "input_shape", "classes", "preprocess"):
        if key not in info:
            raise ValueError(f"bundle info needs {key!r}")
    with atomic_directory(directory) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, tmp / WEIGHTS)
        full = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info}
        (tmp / INFO).write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
        files = {name: {"sha256": sha256(tmp / name), "bytes": (tmp / name).stat().st_size} for name in (WEIGHTS, INFO)}
        (tmp / MANIFEST).write_text(json.dumps({"format": FORMAT, "files": files}, indent=2, sort_keys=True))
    return Path(directory)


def bundle_info(meta: dict[str, Any], metrics: dict[str, float] | None = None, **source: Any) -> dict[str, Any]:
    """The bundle.json fields from a training checkpoint's meta (see engine.checkpoint)."""
    config = meta["config"]
    return {
        "model": config["model"],
        "input_shape": list(meta["input_shape"]),
        "classes": list(meta["classes"]),
        "preprocess": meta["normalizer"],
        "data": config.get("data"),
        "seed": config.get("seed", 0),
        "weights": meta.get("weights", "trained"),
        "metrics": {k: float(v) for k, v in (metrics if metrics is not None else meta.get("metrics", {})).items()},
        "source": {k: v for k, v in source.items() if v is not None},
    }


def verify_bundle(directory: str | os.PathLike, digest: str | None = None) -> dict[str, Any]:
    """Checks manifest.json against `digest` (the one recorded at registration; None: the
    caller vouches for the folder itself), every file against the manifest, and what
    bundle.json may build against ALLOWED_TARGETS; returns bundle.json. Raises BundleError."""
    folder = Path(directory)
    if not folder.is_dir():
        raise BundleError(f"{folder} is not a bundle folder (it does not exist)")
    if digest is not None and (actual := manifest_digest(folder)) != digest:
        raise BundleError(
            f"{folder}: {MANIFEST} fails its hash check against the digest recorded at registration (recorded "
            f"sha256 {digest[:12]}…, file {actual[:12]}…): the bundle was rewritten after it was registered"
        )
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise BundleError(f"{folder}: cannot read {MANIFEST} ({e})") from e
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{folder}: unknown bundle format {manifest.get('format')!r} (this raysitter reads {FORMAT})")
    files = manifest.get("files", {})
    for required in (WEIGHTS, INFO):
        if required not in files:
            raise BundleError(f"{folder}: the manifest does not list {required}")
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            raise BundleError(f"{folder}: {name} is missing")
        actual = sha256(path)
        if actual != entry["sha256"]:
            raise BundleError(
                f"{folder}: {name} fails its hash check (manifest sha256 {entry['sha256'][:12]}…, file "
                f"{actual[:12]}…, {path.stat().st_size} of {entry.get('bytes', '?')} bytes): the file was "
                "changed or cut short after the bundle was written"
            )
    try:
        info = current_targets(json.loads((folder / INFO).read_text()))  # bundles written before the package renames
    except ValueError as e:
        raise BundleError(f"{folder}: {INFO} is not JSON ({e})") from e
    check_targets({"model": info.get("model"), "data": info.get("data")}, what=f"{folder}/{INFO}")
    return info


def read_weights(directory: str | os.PathLike, digest: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Verified weights and bundle.json."""
    info = verify_bundle(directory, digest)
    return load_file(Path(directory) / WEIGHTS), info


def load_bundle(directory: str | os.PathLike, digest: str | None = None) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(network in eval mode, Normalizer, bundle.json) after verifying every hash."""
    from components.preprocess import Normalizer
    from hydra.utils import instantiate

    weights, info = read_weights(directory, digest)
    net = instantiate(info["model"], _convert_="all", input_shape=list(info["input_shape"]), num_classes=len(info["classes"]))
    net.load_state_dict(weights)
    return net.eval(), Normalizer.from_dict(info["preprocess"]), info
