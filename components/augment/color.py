"""Colour jitter with a separate draw per image (brightness and contrast for any number of
channels; saturation and hue for RGB only, where they mean something)."""
from __future__ import annotations

import math

import torch
from torch import nn

_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


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
        if self.brightness:
            x = x * _factor(n, self.brightness, dev)
        if self.contrast:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * _factor(n, self.contrast, dev) + mean
        if c == 3 and self.saturation:
            gray = (x * _RGB_TO_YIQ[0].to(dev).view(1, 3, 1, 1)).sum(1, keepdim=True)
            x = (x - gray) * _factor(n, self.saturation, dev) + gray
        if c == 3 and self.hue:
            x = self._rotate_hue(x)
        return x.clamp(0, 1)

    def _rotate_hue(self, x: torch.Tensor) -> torch.Tensor:
        n, dev = x.shape[0], x.device
        to_yiq = _RGB_TO_YIQ.to(dev, x.dtype)
        angle = torch.empty(n, device=dev).uniform_(-self.hue, self.hue) * 2 * math.pi
        cos, sin = torch.cos(angle), torch.sin(angle)
        rot = torch.zeros(n, 3, 3, device=dev, dtype=x.dtype)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
        matrix = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # (n, 3, 3) on RGB
        return torch.einsum("nij,njhw->nihw", matrix, x)
