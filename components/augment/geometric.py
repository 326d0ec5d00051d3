"""Flip, crop and affine warps (rotate, translate, stretch, shear), one draw per image.

Each op alone is exact (a flip mirrors, a crop copies pixels). Every op also gives its draw as a
sampling matrix (`sampling(n, shape, device)`: output coordinates → input coordinates, in
`F.affine_grid`'s normalised [-1, 1] coordinates, as (n, 3, 3)), so a run of them composes into
one matrix per image and the batch is resampled once (`resample`), whatever the number of ops:
that is what `Compose` and `RandomSubset` do with two or more geometric ops in a row."""
from __future__ import annotations

from collections.abc import Sequence
import math

import torch
from torch import nn
import torch.nn.functional as F


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


def identity(n: int, device: torch.device) -> torch.Tensor:
    return torch.eye(3, device=device).expand(n, 3, 3).clone()


def sampling_grid(sampling: torch.Tensor, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """`F.affine_grid(sampling[:, :2], shape, align_corners=False)`, computed from its separable
    parts: a coordinate is a·x + (b·y + c), so a per-row term (n, h) and a per-column term (n, w)
    are added once per pixel (affine_grid's batched matmul with an inner size of 3 took 3×
    longer than two multiply-adds per pixel, and those ≈ 2.4× longer than this)."""
    h, w = shape[-2], shape[-1]
    device = sampling.device
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    t = sampling[:, :2].to(dtype)  # rows: x, y of the grid
    columns = (t[:, :, 0:1] * xs).transpose(1, 2).unsqueeze(1)  # (n, 1, w, 2)
    rows = torch.addcmul(t[:, :, 2:3], t[:, :, 1:2], ys).transpose(1, 2).unsqueeze(2)  # (n, h, 1, 2)
    return rows + columns  # (n, h, w, 2)


def resample(x: torch.Tensor, sampling: torch.Tensor, fill: str = "zeros") -> torch.Tensor:
    """One bilinear resample of the batch through per-image (n, 3, 3) sampling matrices.
    Pixel centres that land on pixel centres (flips, whole-pixel shifts) copy exactly."""
    grid = sampling_grid(sampling, x.shape, x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=fill, align_corners=False)


class HorizontalFlip(nn.Module):
    """Mirrors each image left↔right with probability p. Not for digits or text."""

    fill = None  # samples only inside the image: any padding mode will do when composed

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(x.shape[0], device=x.device) < self.p
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

    def sampling(self, n: int, shape: Sequence[int], device: torch.device) -> torch.Tensor:
        out = identity(n, device)
        out[:, 0, 0] = torch.where(torch.rand(n, device=device) < self.p, -1.0, 1.0)
        return out


class RandomCrop(nn.Module):
    """Pads by `padding` pixels (reflect) and crops back to the original size at a random
    offset per image: an integer translation by up to ±padding pixels."""

    fill = "reflection"  # composed: pixels shifted in from outside mirror the image about its edge

    def __init__(self, padding: int = 4) -> None:
        super().__init__()
        self.padding = padding

    def sampling(self, n: int, shape: Sequence[int], device: torch.device) -> torch.Tensor:
        """The same draw as `forward` (a whole-pixel shift by −p…p on each axis) as a matrix."""
        h, w = shape[-2:]
        p = self.padding
        out = identity(n, device)
        out[:, 0, 2] = 2 * (torch.randint(0, 2 * p + 1, (n,), device=device) - p) / w
        out[:, 1, 2] = 2 * (torch.randint(0, 2 * p + 1, (n,), device=device) - p) / h
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.padding
        padded = F.pad(x, (p, p, p, p), mode="reflect" if p < min(h, w) else "replicate")
        dy = torch.randint(0, 2 * p + 1, (n,), device=x.device)
        dx = torch.randint(0, 2 * p + 1, (n,), device=x.device)
        # Every h×w window of the padded images as a strided view (n, 2p+1, 2p+1, c, h, w), no
        # copy; indexing its first three axes copies each image's chosen window once (4× faster
        # on CPU than gathering pixel by pixel).
        windows = padded.unfold(2, h, 1).unfold(3, w, 1).permute(0, 2, 3, 1, 4, 5)
        return windows[torch.arange(n, device=x.device), dy, dx]


class RandomAffine(nn.Module):
    """A random affine warp per image, resampled bilinearly.

    degrees: rotation in ±degrees. translate: shift by up to ±translate × the image size.
    scale: (low, high) zoom factor. aspect: stretch one axis against the other by a factor in
    [1/aspect, aspect] (log-uniform). shear: x-shear angle in ±shear degrees.
    fill: "zeros", "border" or "reflection" for pixels warped in from outside.
    """

    def __init__(
        self,
        degrees: float = 0.0,
        translate: float = 0.0,
        scale: Sequence[float] = (1.0, 1.0),
        aspect: float = 1.0,
        shear: float = 0.0,
        fill: str = "zeros",
    ) -> None:
        super().__init__()
        if aspect < 1 or scale[0] <= 0 or scale[0] > scale[1]:
            raise ValueError(f"need aspect ≥ 1 and 0 < scale[0] ≤ scale[1], got aspect={aspect}, scale={list(scale)}")
        self.degrees, self.translate, self.scale = degrees, translate, tuple(scale)
        self.aspect, self.shear, self.fill = aspect, shear, fill

    def matrices(self, n: int, device: torch.device) -> torch.Tensor:
        """(n, 2, 3) sampling matrices for `F.affine_grid`: output coords → input coords."""
        angle = torch.deg2rad(_uniform(n, -self.degrees, self.degrees, device))
        shear = torch.tan(torch.deg2rad(_uniform(n, -self.shear, self.shear, device)))
        zoom = _uniform(n, *self.scale, device)
        log_aspect = _uniform(n, -math.log(self.aspect), math.log(self.aspect), device)
        sx, sy = zoom * torch.exp(log_aspect / 2), zoom * torch.exp(-log_aspect / 2)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # forward map = rotation · shear · scale, in normalised [-1, 1] coordinates
        rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        shearing = torch.eye(2, device=device).repeat(n, 1, 1)
        shearing[:, 0, 1] = shear
        forward = rotation @ shearing @ torch.diag_embed(torch.stack([sx, sy], -1))
        shift = 2 * torch.stack([_uniform(n, -self.translate, self.translate, device) for _ in range(2)], -1)
        inverse = torch.linalg.inv(forward)
        return torch.cat([inverse, -(inverse @ shift.unsqueeze(-1))], dim=-1)

    def sampling(self, n: int, shape: Sequence[int], device: torch.device) -> torch.Tensor:
        out = identity(n, device)
        out[:, :2] = self.matrices(n, device)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resample(x, self.sampling(x.shape[0], x.shape, x.device), self.fill)
