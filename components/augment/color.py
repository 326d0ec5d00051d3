"""Colour jitter with a separate draw per image (brightness and contrast for any number of
channels; saturation and hue for RGB only, where they mean something)."""
from __future__ import annotations

import math

import torch
from torch import nn

_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _factor(n: int, amount: float, device: torch.device) -> torch.Tensor:
    return torch.empty(n, 1, 1, 1, device=device).uniform_(1 - amount, 1 + amount)


class ColorJitter(nn.Module):
    """brightness/contrast/saturation: a factor in [1-a, 1+a]; hue: a rotation of the chroma
    plane by up to ±hue of a full turn (YIQ space). Output is clamped to 0..1."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1) -> None:
        super().__init__()
        if min(brightness, contrast, saturation, hue) < 0 or hue > 0.5:
            raise ValueError("jitter amounts must be ≥ 0 and hue ≤ 0.5")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        dev = x.device
        one = torch.ones(n, 1, 1, 1, device=dev)
        b = _factor(n, self.brightness, dev) if self.brightness else one
        k = _factor(n, self.contrast, dev) if self.contrast else one
        if c != 3 or not (self.saturation or self.hue):
            # x·b, then contrast about the image mean: k·b·x + (1 − k)·b·mean(x)
            return (x * (k * b) + (1 - k) * b * x.mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
        # RGB: brightness, contrast, saturation and hue are all linear in the pixel, so they fold
        # into one 3×3 matrix and one offset per image, applied in a single pass over the pixels.
        eye = torch.eye(3, device=dev, dtype=x.dtype).expand(n, 3, 3)
        matrix = eye
        if self.saturation:  # lerp towards the luma: s·I + (1 − s)·1·wᵀ
            s = _factor(n, self.saturation, dev).view(n, 1, 1)
            luma = _RGB_TO_YIQ[0].to(dev, x.dtype).expand(n, 3, 3)
            matrix = s * eye + (1 - s) * luma
        if self.hue:
            matrix = self._hue_matrix(n, dev, x.dtype) @ matrix
        scale = (k * b).view(n, 1, 1) * matrix
        offset = ((1 - k) * b).view(n, 1) * (matrix @ torch.ones(n, 3, 1, device=dev, dtype=x.dtype)).view(n, 3)
        mean = x.mean(dim=(1, 2, 3))
        out = torch.einsum("nij,njhw->nihw", scale, x) + (offset * mean.view(n, 1)).view(n, 3, 1, 1)
        return out.clamp_(0, 1)

    def _hue_matrix(self, n: int, dev: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Per image: rotate the chroma plane (I, Q of YIQ) by up to ±hue of a full turn."""
        to_yiq = _RGB_TO_YIQ.to(dev, dtype)
        angle = torch.empty(n, device=dev).uniform_(-self.hue, self.hue) * 2 * math.pi
        cos, sin = torch.cos(angle).to(dtype), torch.sin(angle).to(dtype)
        rot = torch.zeros(n, 3, 3, device=dev, dtype=dtype)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
        return _YIQ_TO_RGB.to(dev, dtype) @ rot @ to_yiq  # (n, 3, 3) on RGB
