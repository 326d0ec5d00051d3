"""Sharded, seeded batching of in-memory tensors (no DataLoader: the data are already tensors)."""
from __future__ import annotations

from collections.abc import Iterator

import torch

from components.data.files import in_files


def shard_indices(n: int, rank: int, world_size: int, shuffle_seed: int | None = None) -> torch.Tensor:
    """This rank's indices into range(n).

    Training (a seed given): one permutation, identical on every rank, dealt round-robin and cut
    so every rank gets the same count, which DDP needs (at most world_size-1 examples skipped).
    Evaluation (no seed): every example exactly once; shards may differ by one.
    """
    if shuffle_seed is None:
        return torch.arange(rank, n, world_size)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(shuffle_seed))
    usable = (n // world_size) * world_size
    return order[rank:usable:world_size]


def batches(
    x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of (x, y) in the order of `index`; the last one may be smaller. Images read
    from files (`ImageFiles`) are streamed through a DataLoader onto y's device."""
    chunks = [index[start : start + batch_size] for start in range(0, len(index), batch_size)]
    if in_files(x):
        for i, xb in zip(chunks, x.stream([c.cpu() for c in chunks], y.device)):
            yield xb, y[i]
        return
    for i in chunks:
        yield x[i], y[i]
