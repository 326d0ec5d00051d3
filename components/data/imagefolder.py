"""A user's class-per-folder images (`root/<class>/<image>`), resized; held in memory, or read
from their files batch by batch when they do not fit (`in_memory=False`)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from components.data.files import ImageFiles
from components.data.base import check_fractions, DataNotFoundError, Splits, split_arrays


class ImageFolderSource:
    """Images are resized to `image_size` (height, width) and converted to `channels` (1 or 3).
    `in_memory=False` keeps only the file list: each batch is decoded by `loader_workers`
    DataLoader processes while the model trains on the previous one."""

    def __init__(
        self,
        root: str,
        image_size: Sequence[int] = (32, 32),
        channels: int = 3,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        in_memory: bool = True,
        loader_workers: int = 2,
    ) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataNotFoundError(
                f"image folder {self.root} does not exist. Point data.root at a folder with one "
                "sub-folder per class (ROOT/cat/1.png, ROOT/dog/2.jpg, …)."
            )
        if not any(p.is_dir() for p in self.root.iterdir()):
            raise DataNotFoundError(
                f"image folder {self.root} has no class sub-folders. Put each class's images in its "
                "own sub-folder (ROOT/cat/1.png, ROOT/dog/2.jpg, …)."
            )
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.image_size, self.channels = tuple(image_size), channels
        check_fractions(val_fraction, test_fraction)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        if loader_workers < 0:
            raise ValueError(f"loader_workers must be ≥ 0, got {loader_workers}")
        self.in_memory, self.loader_workers = in_memory, loader_workers

    def scan(self, decode_per_class: int = 2) -> dict[str, int]:
        """Images per class, after checking what training would trip over later: at least two
        class folders, every one holding images, and the first `decode_per_class` of each
        decoding. Raises DataNotFoundError naming the folder or file."""
        from PIL import Image
        from torchvision.datasets.folder import IMG_EXTENSIONS

        classes = sorted(p for p in self.root.iterdir() if p.is_dir())
        if len(classes) < 2:
            raise DataNotFoundError(
                f"image folder {self.root} has {len(classes)} class sub-folder(s) ({', '.join(c.name for c in classes) or 'none'}); "
                "a classifier needs at least two (ROOT/cat/…, ROOT/dog/…)"
            )
        counts = {}
        for folder in classes:
            files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS)
            if not files:
                raise DataNotFoundError(f"class folder {folder} holds no image files ({', '.join(IMG_EXTENSIONS)})")
            for f in files[:decode_per_class]:
                try:
                    with Image.open(f) as img:
                        img.load()
                except Exception as e:
                    raise DataNotFoundError(f"{f} cannot be decoded as an image ({type(e).__name__}: {e})") from None
            counts[folder.name] = len(files)
        return counts

    def describe(self) -> tuple[tuple[int, int, int], int]:
        """(input shape, number of classes) from the folder names, without reading images."""
        classes = [p for p in self.root.iterdir() if p.is_dir()]
        return (self.channels, *self.image_size), len(classes)  # type: ignore[return-value]

    def load(self, seed: int) -> Splits:
        from torchvision.datasets import ImageFolder  # imported when used (~1 s)
        from torchvision.transforms import v2

        transform = v2.Compose(
            [
                v2.PILToTensor(),
                v2.Grayscale(1) if self.channels == 1 else v2.RGB(),
                v2.Resize(self.image_size, antialias=True),
            ]
        )
        folder = ImageFolder(str(self.root), transform=transform)
        if len(folder) == 0:
            raise DataNotFoundError(f"image folder {self.root} holds no readable images")
        y = torch.as_tensor(folder.targets, dtype=torch.int64)
        if not self.in_memory:
            files = ImageFiles([path for path, _ in folder.samples], transform, (self.channels, *self.image_size), self.loader_workers)
            return split_arrays(files, y, list(folder.classes), self.val_fraction, self.test_fraction, seed)
        x = torch.stack([img for img, _ in folder])
        return split_arrays(x, y, list(folder.classes), self.val_fraction, self.test_fraction, seed)
