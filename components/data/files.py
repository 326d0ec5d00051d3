"""Images read from their files on demand, for image folders that do not fit in memory.

`ImageFiles` stands in for the N×C×H×W uint8 tensor of a `Split`: the training loop streams its
batches through a `DataLoader` (worker processes decode, pinned memory when the device is a
GPU, non-blocking copies), and indexing it (`x[a:b]`, `x[index]`) reads just those images.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch


def in_files(x: object) -> bool:
    """Whether a split's images are `ImageFiles` (read on demand) rather than a tensor."""
    return isinstance(x, ImageFiles)


class _Decode(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[str], transform: Callable) -> None:
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            return self.transform(img)


class ImageFiles:
    """`paths` decoded by `transform` (PIL image → C×H×W uint8 of `image_shape`)."""

    ndim, dtype, device = 4, torch.uint8, torch.device("cpu")

    def __init__(self, paths: Sequence[str], transform: Callable, image_shape: Sequence[int], workers: int = 2) -> None:
        self.dataset = _Decode(paths, transform)
        self.image_shape, self.workers = tuple(image_shape), workers

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.image_shape))

    def subset(self, index: torch.Tensor) -> ImageFiles:
        """The files at `index`, still unread."""
        return ImageFiles([self.dataset.paths[i] for i in index.tolist()], self.dataset.transform, self.image_shape, self.workers)

    def __getitem__(self, key: slice | torch.Tensor) -> torch.Tensor:
        """Reads the images at `key` (a slice or an index tensor) in this process."""
        index = range(len(self))[key] if isinstance(key, slice) else key.tolist()
        return torch.stack([self.dataset[i] for i in index]) if len(index) else torch.empty(0, *self.image_shape, dtype=torch.uint8)

    def to(self, *args, **kwargs) -> ImageFiles:  # the files stay where they are; batches move
        return self

    def pin_memory(self) -> ImageFiles:
        return self

    def stream(self, chunks: Sequence[torch.Tensor], device: torch.device) -> Iterator[torch.Tensor]:
        """The batches of images at each index chunk, in order, decoded by `workers` processes
        ahead of the loop and copied to `device`."""
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=[c.tolist() for c in chunks], num_workers=self.workers,
            pin_memory=device.type == "cuda", prefetch_factor=4 if self.workers else None,
            # its own generator: the workers' seeds must not be drawn from the global RNG, which
            # drives augmentation and dropout (results would differ from the in-memory path)
            generator=torch.Generator().manual_seed(0),
        )
        for batch in loader:
            yield batch.to(device, non_blocking=True)
