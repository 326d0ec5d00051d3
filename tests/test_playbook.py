"""The playbook's hand-written pieces behave as the lecture describes."""
from __future__ import annotations

import math

from omegaconf import OmegaConf
import pytest
import torch
from torch import nn

from components.augment import ColorJitter, HorizontalFlip, RandomAffine, RandomCombo, RandomCrop
from components.init import WeightInit
from components.model import ConvNet, Maxout, MLP, ResNet
from components.regularisation import DropConnectLinear
from components.scheduler import InverseTimeLR
from pipelines.runtime import build
from pipelines.runtime.worker import LocalSession, run_training


def test_maxout_is_the_max_over_its_pieces():
    x = torch.randn(5, 6, 3, 3)
    out = Maxout(pieces=3)(x)
    assert out.shape == (5, 2, 3, 3)
    assert torch.equal(out[:, 0], torch.maximum(torch.maximum(x[:, 0], x[:, 1]), x[:, 2]))
    assert torch.equal(out[:, 1], x[:, 3:6].amax(dim=1))


def test_maxout_widens_the_layer_before_it():
    mlp = MLP((1, 4, 4), 3, hidden=[8], activation=lambda: Maxout(pieces=2))
    assert mlp.body[1].out_features == 16 and mlp(torch.rand(2, 1, 4, 4)).shape == (2, 3)


def test_dropconnect_zeroes_about_p_of_the_weights_and_is_deterministic_in_eval():
    torch.manual_seed(0)
    layer = DropConnectLinear(200, 100, p=0.3)
    x = torch.eye(200)  # output row i is column i of the (masked) weight: the mask becomes visible
    layer.train()
    masked = layer(x) - layer.bias
    zero_fraction = float((masked == 0).float().mean())
    assert abs(zero_fraction - 0.3) < 0.02
    assert torch.allclose(masked[masked != 0], (layer.weight.T / 0.7)[masked != 0])
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    assert torch.allclose(layer(x) - layer.bias, layer.weight.T)


def test_inverse_time_and_step_schedules_give_the_expected_lrs():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = InverseTimeLR(opt, decay=0.5)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 1 / 1.5, 1 / 2.0, 1 / 2.5])
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_cyclic_schedule_goes_up_to_ten_times_and_back(compose_train):
    config = OmegaConf.to_container(compose_train(["scheduler=cyclic", "optimizer=momentum", "scheduler.step_size_up=4"]), resolve=True)
    assert config["scheduler"]["max_lr"] == pytest.approx(10 * config["optimizer"]["lr"])
    opt = build.optimizer(config["optimizer"], nn.Linear(2, 2))
    sched, interval = build.scheduler(config["scheduler"], opt)
    lrs = []
    for _ in range(9):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert interval == "step" and lrs[4] == pytest.approx(0.5) and lrs[8] == pytest.approx(0.05)


AUGMENTATIONS = [
    HorizontalFlip(p=0.5),
    RandomCrop(padding=2),
    RandomAffine(degrees=20),
    RandomAffine(translate=0.2),
    RandomAffine(scale=(0.8, 1.2), aspect=1.3),
    RandomAffine(shear=15),
    ColorJitter(),
    RandomCombo(p=0.8),
]


@pytest.mark.parametrize("op", AUGMENTATIONS, ids=lambda op: repr(op).split("(")[0])
@pytest.mark.parametrize("channels", [1, 3])
def test_identical_images_in_one_batch_come_out_differently(op, channels):
    if isinstance(op, ColorJitter) and channels == 1:
        op = ColorJitter(brightness=0.4, contrast=0.4, saturation=0, hue=0)
    torch.manual_seed(0)
    image = torch.rand(channels, 12, 12)
    batch = image.expand(16, -1, -1, -1).contiguous()
    out = op(batch)
    assert out.shape == batch.shape
    distinct = {tuple(o.flatten().round(decimals=5).tolist()) for o in out}
    assert len(distinct) > 1, "every image must draw its own parameters"


def test_zero_magnitude_affine_is_the_identity():
    x = torch.rand(3, 3, 10, 10)
    assert torch.allclose(RandomAffine()(x), x, atol=1e-5)


def test_init_schemes_set_the_scale_the_lecture_gives():
    net = nn.Sequential(nn.Linear(500, 500), nn.Linear(500, 500))
    WeightInit(lambda w: nn.init.normal_(w, 0, 0.01), bias=0.0)(net)
    assert abs(float(net[0].weight.std()) - 0.01) < 0.001
    WeightInit(nn.init.xavier_normal_, bias=0.01)(net)
    assert abs(float(net[0].weight.std()) - math.sqrt(2 / 1000)) < 0.002 and float(net[0].bias[0]) == pytest.approx(0.01)
    WeightInit(lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"))(net)
    assert abs(float(net[0].weight.std()) - math.sqrt(2 / 500)) < 0.002


def test_batch_norm_sits_where_configured_and_eval_uses_running_stats():
    pre = MLP((1, 2, 2), 2, hidden=[4], batch_norm=True, bn_position="pre_activation")
    post = MLP((1, 2, 2), 2, hidden=[4], batch_norm=True, bn_position="post_activation")
    assert [type(m).__name__ for m in pre.body] == ["Flatten", "Linear", "BatchNorm1d", "ReLU"]
    assert [type(m).__name__ for m in post.body] == ["Flatten", "Linear", "ReLU", "BatchNorm1d"]
    pre.train()
    pre(torch.rand(16, 1, 2, 2) * 5 + 3)
    pre.eval()
    x = torch.rand(1, 1, 2, 2)
    assert torch.equal(pre(x), pre(x))  # a batch of one works: running statistics, not batch ones
    assert not torch.allclose(pre.body[2].running_mean, torch.zeros(4))


def test_fractional_max_pooling_and_stochastic_depth_are_used():
    conv = ConvNet((3, 16, 16), 10, channels=[8, 8], pool="fractional")
    assert any(isinstance(m, nn.FractionalMaxPool2d) for m in conv.modules())
    x = torch.rand(2, 3, 16, 16)
    assert not torch.equal(conv(x), conv(x))  # training: new pseudo-random regions per call
    conv.eval()
    assert torch.equal(conv(x), conv(x)) and conv(x).shape == (2, 10)
    res = ResNet((3, 16, 16), 10, widths=[8, 16], stochastic_depth=0.5)
    probs = [m.p for m in res.modules() if type(m).__name__ == "StochasticDepth"]
    assert probs[0] == 0.0 and probs[-1] == pytest.approx(0.5) and probs == sorted(probs)
    res.eval()
    assert torch.equal(res(x), res(x))


def test_lbfgs_reduces_the_loss_on_a_full_batch_problem(compose_train):
    config = OmegaConf.to_container(
        compose_train(["optimizer=lbfgs", "trainer.epochs=3", "model.hidden=[32]", "data=synthetic", "data.shape=[1,6,6]", "data.num_samples=300"]),
        resolve=True,
    )
    session = LocalSession()
    run_training(config, session)
    losses = [r["train/loss"] for r in session.reports]
    assert losses[-1] < 0.5 * losses[0]


def test_a_mixed_combination_trains_in_process(compose_train):
    config = OmegaConf.to_container(
        compose_train(
            ["model=convnet", "model.activation=maxout", "model.channels=[8,8]", "model.hidden=[16]", "model.dropout=0.2",
             "model.drop_connect=0.2", "model.pool=fractional", "init=xavier", "optimizer=nesterov", "scheduler=inverse_time",
             "augment=random_combo", "trainer.epochs=2"]
        ),
        resolve=True,
    )
    session = LocalSession()
    final = run_training(config, session)
    assert math.isfinite(final["train/loss"]) and final["val/acc"] > 0.2


def test_color_jitter_in_one_pass_equals_the_four_steps_in_turn():
    """The fused matrix equals brightness → contrast → saturation → hue applied one by one
    (same random draws, in that order)."""
    torch.manual_seed(1)
    x = torch.rand(8, 3, 6, 6)
    op = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    torch.manual_seed(2)
    fused = op(x)
    torch.manual_seed(2)
    n = len(x)
    b, k, s = (torch.empty(n, 1, 1, 1).uniform_(0.6, 1.4) for _ in range(3))
    angle = torch.empty(n).uniform_(-0.1, 0.1) * 2 * math.pi
    y = x * b
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - mean) * k + mean
    gray = (y * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    y = (y - gray) * s + gray
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    rot = torch.zeros(n, 3, 3)
    rot[:, 0, 0], rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = 1, angle.cos(), -angle.sin(), angle.sin(), angle.cos()
    y = torch.einsum("nij,njhw->nihw", torch.linalg.inv(yiq) @ rot @ yiq, y).clamp(0, 1)
    assert torch.allclose(fused, y, atol=1e-5)
