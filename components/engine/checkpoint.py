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
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CorruptCheckpointError(f"checkpoint {directory}: cannot read {META} ({e})") from e


def load_weights(model: nn.Module, directory: str | os.PathLike) -> nn.Module:
    path = Path(directory) / WEIGHTS
    try:
        state = load_file(path)
    except Exception as e:  # safetensors raises several types for truncated files
        raise CorruptCheckpointError(f"checkpoint {directory}: cannot read {WEIGHTS} ({e})") from e
    model.load_state_dict(state)
    return model


def read_train_state(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / STATE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CorruptCheckpointError(f"checkpoint {directory}: cannot read {STATE} ({e})") from e
