"""Checkpoint directories, written atomically and loaded without unpickling code.

Layout: `model.safetensors` (weights), `train_state.pt` (optimizer, scheduler, epoch, RNG;
tensors and plain containers only, read with `weights_only=True`), `meta.json` (resolved
config, preprocessing statistics, class names, metrics).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
import json
import os
from pathlib import Path
import shutil
import tempfile
from typing import Any

import torch
from torch import nn
from safetensors.torch import load_file, save_file

WEIGHTS, STATE, META = "model.safetensors", "train_state.pt", "meta.json"


class CorruptCheckpointError(RuntimeError):
    """A checkpoint directory is incomplete or unreadable."""


def write_checkpoint(
    directory: str | os.PathLike,
    model: nn.Module,
    meta: dict[str, Any],
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Writes into a temporary sibling folder, then renames it to `directory`, so a reader
    never sees a half-written checkpoint. An existing `directory` is replaced."""
    with atomic_directory(directory) as tmp:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, tmp / WEIGHTS)
        if train_state is not None:
            torch.save(train_state, tmp / STATE)
        (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return Path(directory)


@contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary sibling folder to fill; on success it replaces `directory` in one
    rename, on any error it is removed and `directory` stays as it was."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / META
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CorruptCheckpointError(f"checkpoint {directory}: cannot read {META} ({e})") from e
    from components.legacy import current_targets

    return current_targets(meta)  # checkpoints written before the package renames name the old ones


def read_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        return load_file(Path(directory) / WEIGHTS)
    except Exception as e:  # safetensors raises several types for truncated files
        raise CorruptCheckpointError(f"checkpoint {directory}: cannot read {WEIGHTS} ({e})") from e


def load_weights(model: nn.Module, directory: str | os.PathLike) -> nn.Module:
    model.load_state_dict(read_weights(directory))
    return model


def read_train_state(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / STATE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CorruptCheckpointError(f"checkpoint {directory}: cannot read {STATE} ({e})") from e


def verify_checkpoint(directory: str | os.PathLike) -> dict[str, Any]:
    """Reads every file of a checkpoint (meta, weights, train state) without loading it into a
    model; returns its meta. Raises CorruptCheckpointError naming the unreadable file."""
    meta = read_meta(directory)
    read_weights(directory)
    if (Path(directory) / STATE).exists() or "epoch" in meta:
        read_train_state(directory)
    return meta


def usable_checkpoint(latest: str | os.PathLike, say: Any = print) -> str:
    """The newest checkpoint that reads back whole among `latest` (the one Ray Train
    registered last) and the ones kept beside it. A newer one than `latest` exists when a run
    stopped between a worker's upload of a checkpoint and its controller registering it; its
    epoch's metrics are already logged, so training goes on from there instead of redoing
    epochs. A corrupt `latest` is skipped for the newest readable one, saying which and why.
    Raises CorruptCheckpointError when none is readable: a corrupt checkpoint is never loaded."""
    latest = Path(latest)
    problem = None
    try:
        latest_epoch = int(verify_checkpoint(latest).get("epoch", 0))
    except CorruptCheckpointError as e:
        problem, latest_epoch = str(e), None
    candidates = []
    for sibling in latest.parent.iterdir() if latest.parent.is_dir() else []:
        if sibling != latest and sibling.is_dir() and (sibling / META).exists():
            try:
                epoch = int(read_meta(sibling).get("epoch", 0))
            except (CorruptCheckpointError, ValueError, TypeError):
                continue
            if latest_epoch is None or epoch > latest_epoch:
                candidates.append((epoch, str(sibling)))
    for epoch, path in sorted(candidates, reverse=True):  # newest first; each read whole only when needed
        try:
            verify_checkpoint(path)
        except CorruptCheckpointError:
            continue
        if problem:
            say(f"WARNING: skipping a corrupt checkpoint: {problem}. Resuming from the newest readable one, {path} (epoch {epoch}).")
        else:
            say(f"resuming from {path} (epoch {epoch}), newer than Ray Train's latest {latest} (epoch {latest_epoch}): "
                f"the run stopped before its controller registered it.")
        return path
    if problem:
        raise CorruptCheckpointError(
            f"{problem}; no other readable checkpoint is kept beside it, so training cannot resume. "
            f"Fix: delete {latest.parent} to start the run over (or raise trainer.checkpoints_to_keep to keep more)."
        )
    return str(latest)
