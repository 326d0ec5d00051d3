"""Batched on-device augmentation vs torchvision's per-image PIL pipeline in a DataLoader.

The same operations on CIFAR-shaped uint8 images (3×32×32): horizontal flip, random crop after
4-pixel padding, rotation up to ±15°, colour jitter (brightness, contrast, saturation 0.4, hue
0.1), ending in a float batch. raysitter augments a whole batch at once with tensor ops (on the
GPU when there is one); torchvision decodes nothing here (images are in memory) but still works
one PIL image at a time, in DataLoader worker processes.

    python bench/augment.py [--images 8192] [--batch-size 256]

Each rate is the median of several epochs (7 for raysitter, 3 for torchvision).

Last line: `ratio: X` = raysitter images/s ÷ the faster torchvision configuration (target ≥ 15 on CPU).
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np
import torch

from _common import arguments, compose, table


def raysitter_rate(images: torch.Tensor, batch_size: int, device: torch.device, threads: int) -> float:
    from components.engine.loop import to_float
    from pipelines.runtime import build

    from components.augment import Compose

    torch.set_num_threads(threads)
    # the same four ops as torchvision's pipeline, as one Compose (what a YAML listing them builds):
    # flip, crop and rotation are one resample of the batch, colour jitter one matrix per image
    flip_crop, rotate, jitter = (build.augment(compose([f"augment={name}"])["augment"]) for name in ("flip_crop", "rotate", "color_jitter"))
    augment = Compose([*flip_crop.ops, rotate, jitter]).to(device)
    x = images.to(device)

    def epoch() -> None:
        for i in range(0, len(x), batch_size):
            augment(to_float(x[i : i + batch_size]))
        if device.type == "cuda":
            torch.cuda.synchronize()

    epoch()  # warm-up
    rates = []
    for _ in range(7):  # one epoch takes a fraction of a second here: the median of several
        start = time.perf_counter()
        epoch()
        rates.append(len(x) / (time.perf_counter() - start))
    return statistics.median(rates)


class PilDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray) -> None:
        from torchvision import transforms as T

        self.images = images  # N×32×32×3 uint8
        self.transform = T.Compose([
            T.RandomHorizontalFlip(), T.RandomCrop(32, padding=4), T.RandomRotation(15),
            T.ColorJitter(0.4, 0.4, 0.4, 0.1), T.ToTensor(),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i]))


def torchvision_rate(images: np.ndarray, batch_size: int, workers: int) -> float:
    torch.set_num_threads(1)
    loader = torch.utils.data.DataLoader(PilDataset(images), batch_size=batch_size, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0)
    for _ in loader:  # warm-up (starts the workers)
        break
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        n = sum(len(b) for b in loader)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    args = arguments(__doc__, images=8192, batch_size=256)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.images, 32, 32, 3), dtype=np.uint8)
    cores = os.cpu_count() or 1
    rows = []
    for workers in sorted({0, cores}):
        rows.append({"pipeline": f"torchvision PIL, DataLoader num_workers={workers}", "device": "cpu",
                     "images/s": torchvision_rate(images, args.batch_size, workers)})
    baseline = max(r["images/s"] for r in rows)
    tensors = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    best_cpu = 0.0
    for device in devices:
        rate = raysitter_rate(tensors, args.batch_size, device, cores)
        best_cpu = rate if device.type == "cpu" else best_cpu
        rows.append({"pipeline": f"raysitter batched ({cores} threads)", "device": device.type, "images/s": rate})
    for r in rows:
        r["vs torchvision"] = r["images/s"] / baseline
    print(table(rows))
    print(f"ratio: {best_cpu / baseline:.2f}")


if __name__ == "__main__":
    main()
