"""Flip, crop and affine warps (rotate, translate, stretch, shear), one draw per image."""
from __future__ import annotations

from collections.abc import Sequence
import math

import torch
from torch import nn
import torch.nn.functional as F


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


class HorizontalFlip(nn.Module):
    """Mirrors each image left↔right with probability p. Not for digits or text."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(x.shape[0], device=x.device) < self.p
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


class RandomCrop(nn.Module):
    """Pads by `padding` pixels (reflect) and crops back to the original size at a random
    offset per image: an integer translation by up to ±padding pixels."""

    def __init__(self, padding: int = 4) -> None:
        super().__init__()
        self.padding = padding

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.matrices(x.shape[0], x.device).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=self.fill, align_corners=False)
