"""The model-zoo bundle: a folder that carries everything needed to use a trained network.

    model.safetensors   the weights (safetensors: loading runs no code)
    bundle.json         model config, input shape, class names, preprocessing statistics
                        (mean/std, per channel or global), data config, training metrics, source
    manifest.json       sha256 and size of every other file

Written atomically (a temporary sibling folder, then one rename). `load_bundle` verifies every
hash before it reads a single weight; a bundle that fails is never loaded.
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

FORMAT = "raysitter-bundle/1"
WEIGHTS, INFO, MANIFEST = "model.safetensors", "bundle.json", "manifest.json"


class BundleError(RuntimeError):
    """A bundle is missing, incomplete, tampered with or of an unknown format."""


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


def verify_bundle(directory: str | os.PathLike) -> dict[str, Any]:
    """Checks the manifest against every file; returns bundle.json. Raises BundleError."""
    folder = Path(directory)
    if not folder.is_dir():
        raise BundleError(f"{folder} is not a bundle folder (it does not exist)")
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
    return json.loads((folder / INFO).read_text())


def read_weights(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Verified weights and bundle.json."""
    info = verify_bundle(directory)
    return load_file(Path(directory) / WEIGHTS), info


def load_bundle(directory: str | os.PathLike) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(network in eval mode, Normalizer, bundle.json) after verifying every hash."""
    from components.preprocess import Normalizer
    from hydra.utils import instantiate

    weights, info = read_weights(directory)
    net = instantiate(info["model"], _convert_="all", input_shape=list(info["input_shape"]), num_classes=len(info["classes"]))
    net.load_state_dict(weights)
    return net.eval(), Normalizer.from_dict(info["preprocess"]), info
