"""Geometric ops composed into one resample per batch: single ops stay exact, a composed flip and
crop still copy whole pixels, and a composed rotation's draws and the pixel statistics of the
result match the ops applied one after another."""
from __future__ import annotations

import math

import pytest
import torch

from components.augment import ColorJitter, Compose, HorizontalFlip, RandomAffine, RandomCombo, RandomCrop
from components.augment.compose import runs


def images(n: int = 64, c: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g)


def test_runs_group_consecutive_geometric_ops_and_leave_the_rest_alone():
    flip, crop, rotate, jitter = HorizontalFlip(), RandomCrop(2), RandomAffine(degrees=10), ColorJitter()
    assert [len(r) for r in runs([flip, crop, rotate, jitter])] == [3, 1]
    assert [len(r) for r in runs([jitter, crop, jitter, rotate])] == [1, 1, 1, 1]


def test_single_ops_are_exact():
    x = images()
    assert torch.equal(HorizontalFlip(p=1.0)(x), x.flip(-1))
    torch.manual_seed(0)
    out = RandomCrop(padding=2)(x)
    inner = out[..., 2:-2, 2:-2]
    assert all(any(torch.equal(inner[i], x[i, :, 2 + dy:14 + dy, 2 + dx:14 + dx]) for dy in range(-2, 3) for dx in range(-2, 3))
               for i in range(len(x)))


def test_a_composed_flip_and_crop_is_one_resample_that_still_copies_whole_pixels():
    x = images()
    torch.manual_seed(1)
    out = Compose([HorizontalFlip(p=1.0), RandomCrop(padding=2)])(x)
    flipped = x.flip(-1)
    shifts = []
    for i in range(len(x)):
        match = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.allclose(out[i, :, 2:-2, 2:-2], flipped[i, :, 2 + dy:14 + dy, 2 + dx:14 + dx], atol=1e-5)]
        assert match, f"image {i} is not the flipped image shifted by whole pixels"
        shifts.append(match[0])
    assert len(set(shifts)) > 10  # each image its own shift, from all of −2…2 on both axes
    assert {dy for dy, _ in shifts} == {dx for _, dx in shifts} == set(range(-2, 3))


def test_a_composed_rotation_draws_its_angles_as_documented_and_matches_the_ops_in_turn():
    n = 4000
    torch.manual_seed(2)
    crop, rotate = RandomCrop(padding=2), RandomAffine(degrees=15, fill="reflection")
    sampling = crop.sampling(n, (3, 16, 16), torch.device("cpu")) @ rotate.sampling(n, (3, 16, 16), torch.device("cpu"))
    angles = torch.rad2deg(torch.atan2(sampling[:, 1, 0], sampling[:, 0, 0]))
    assert angles.abs().max() <= 15 + 1e-3 and angles.abs().max() > 14.5
    deciles = torch.quantile(angles, torch.linspace(0.1, 0.9, 9))
    assert torch.allclose(deciles, torch.linspace(-12, 12, 9), atol=1.0)  # uniform on ±15°
    shifts = sampling[:, :2, 2] * 8  # in pixels: the crop's whole-pixel shift, moved by the rotation
    assert shifts.abs().max() <= 2 * math.sqrt(2) + 1e-4
    # pixel statistics: composed vs one op after another, on images with structure
    x = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(512, 3, 16, 16) * torch.rand(512, 3, 1, 1)
    torch.manual_seed(3)
    composed = Compose([crop, rotate])(x)
    torch.manual_seed(3)
    in_turn = rotate(crop(x))
    assert abs(composed.mean() - in_turn.mean()) < 0.01 and abs(composed.std() - in_turn.std()) < 0.01
    assert torch.allclose(composed.mean(dim=(0, 2)), in_turn.mean(dim=(0, 2)), atol=0.03)  # the same profile across columns


@pytest.mark.parametrize("p", [0.3, 0.8])
def test_random_combo_is_one_resample_with_each_op_chosen_per_image(p):
    torch.manual_seed(4)
    combo = RandomCombo(magnitude=1.0, p=p)
    geometric = combo.ops[:4]
    n = 20000
    eye = torch.eye(3)
    unchanged = torch.ones(n, dtype=torch.bool)
    sampling = torch.eye(3).expand(n, 3, 3)
    for op in geometric:
        picked = combo.chosen(n, torch.device("cpu"))
        unchanged &= ~picked
        sampling = sampling @ torch.where(picked.view(-1, 1, 1), op.sampling(n, (3, 16, 16), torch.device("cpu")), eye)
    assert abs(unchanged.float().mean() - (1 - p) ** 4) < 0.015  # no geometric op at all: (1 − p)⁴ of the images
    assert torch.allclose(sampling[unchanged], eye.expand(int(unchanged.sum()), 3, 3))
    x = images(256)
    out = combo(x)
    assert out.shape == x.shape and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


def test_the_sampling_grid_is_affine_grids():
    import torch.nn.functional as F

    from components.augment.geometric import sampling_grid

    torch.manual_seed(5)
    sampling = RandomAffine(degrees=30, translate=0.2, scale=(0.8, 1.2), aspect=1.3, shear=10).sampling(8, (3, 12, 20), torch.device("cpu"))
    expected = F.affine_grid(sampling[:, :2], [8, 3, 12, 20], align_corners=False)
    assert torch.allclose(sampling_grid(sampling, (8, 3, 12, 20), torch.float32), expected, atol=1e-6)
