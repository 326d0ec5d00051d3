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
        one = torch.ones(n, 1, 1, 1, device=dev)
        b = _factor(n, self.brightness, dev) if self.brightness else one
        k = _factor(n, self.contrast, dev) if self.contrast else one
        if c != 3 or not (self.saturation or self.hue):
            # x·b, then contrast about the image mean: k·b·x + (1 − k)·b·mean(x)
            return (x * (k * b) + (1 - k) * b * x.mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
        # RGB: brightness, contrast, saturation and hue are all linear in the pixel, so they fold
        # into one 3×3 matrix and one offset per image, applied in a single pass over the pixels.
        # Both saturation and hue keep grey grey (matrix · 1 = 1), so the offset is one number.
        eye, luma, hue0, hue_cos, hue_sin = _constants(dev, x.dtype)
        matrix = eye.expand(n, 3, 3)
        if self.saturation:  # lerp towards the luma: s·I + (1 − s)·1·wᵀ
            s = _factor(n, self.saturation, dev).view(n, 1, 1).to(x.dtype)
            matrix = torch.lerp(luma, eye, s)
        if self.hue:  # rotate the chroma plane (I, Q of YIQ): YIQ⁻¹ · R(θ) · YIQ = A0 + cos θ·A1 + sin θ·A2
            angle = torch.empty(n, device=dev).uniform_(-self.hue, self.hue) * 2 * math.pi
            rotation = torch.addcmul(torch.addcmul(hue0, angle.cos().view(n, 1, 1).to(x.dtype), hue_cos),
                                     angle.sin().view(n, 1, 1).to(x.dtype), hue_sin)
            matrix = rotation @ matrix
        scale = (k * b).view(n, 1, 1).to(x.dtype) * matrix
        offset = ((1 - k) * b).view(n).to(x.dtype) * x.mean(dim=(1, 2, 3))
        out = torch.bmm(scale, x.reshape(n, c, -1)).add_(offset.view(n, 1, 1))  # bmm: einsum's own path took 1.5–2.5× longer
        return out.clamp_(0, 1).view_as(x)


_CONSTANTS: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}


def _constants(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """I, the luma matrix 1·wᵀ, and A0, A1, A2 of the hue rotation, once per device and dtype."""
    key = (torch.device(device), dtype)
    if key not in _CONSTANTS:
        to_yiq, to_rgb = _RGB_TO_YIQ.double(), torch.linalg.inv(_RGB_TO_YIQ.double())
        parts = [torch.diag(torch.tensor([1.0, 0, 0], dtype=torch.float64)), torch.diag(torch.tensor([0, 1.0, 1.0], dtype=torch.float64)),
                 torch.tensor([[0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]], dtype=torch.float64)]
        hue = [to_rgb @ part @ to_yiq for part in parts]
        luma = _RGB_TO_YIQ[0].double().expand(3, 3)
        _CONSTANTS[key] = tuple(t.to(device, dtype) for t in (torch.eye(3, dtype=torch.float64), luma, *hue))
    return _CONSTANTS[key]
