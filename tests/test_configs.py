"""Every config file composes and instantiates (lightning-hydra-template's test_configs)."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from pipelines.runtime import build
from pipelines.runtime.app import CONF_DIR, rewrite_group_overrides


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_every_group_has_options():
    for group in ("data", "preprocess", "augment", "init", "model", "model/activation", "optimizer", "scheduler", "trainer", "tracking"):
        assert options(group), group


def test_default_config_composes(compose_train):
    cfg = compose_train()
    assert set(cfg) >= {"data", "preprocess", "augment", "model", "optimizer", "scheduler", "trainer", "tracking", "seed"}
    assert cfg.optimizer._partial_ and cfg.scheduler._partial_


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("activation", options("model/activation"))
def test_every_model_and_activation_trains_a_step(compose_train, model, activation):
    cfg = compose_train([f"model={model}", f"model/activation={activation}"])
    config = OmegaConf.to_container(cfg, resolve=True)
    net = build.model(config["model"], (1, 8, 8), 10, config["init"])
    opt = build.optimizer(config["optimizer"], net)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    before = [p.detach().clone() for p in net.parameters()]
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    assert net(x).shape == (4, 10)
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


@pytest.mark.parametrize("optimizer", options("optimizer"))
@pytest.mark.parametrize("scheduler", options("scheduler"))
def test_every_optimizer_and_scheduler_builds(compose_train, optimizer, scheduler):
    config = OmegaConf.to_container(compose_train([f"optimizer={optimizer}", f"scheduler={scheduler}"]), resolve=True)
    net = torch.nn.Linear(3, 2)
    opt = build.optimizer(config["optimizer"], net)
    assert isinstance(opt, torch.optim.Optimizer)
    sched, interval = build.scheduler(config["scheduler"], opt)
    assert interval in ("epoch", "step")
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return loss

    before = net.weight.detach().clone()
    opt.step(closure)
    sched.step()
    assert opt.param_groups[0]["lr"] > 0
    assert not torch.equal(before, net.weight)


def test_weight_decay_skips_biases_and_norms(compose_train):
    config = OmegaConf.to_container(compose_train(["optimizer=sgd", "optimizer.weight_decay=0.01"]), resolve=True)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    opt = build.optimizer(config["optimizer"], net)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(net[0].weight), id(net[2].weight)}


@pytest.mark.parametrize("init", options("init"))
def test_every_init_builds_a_model(compose_train, init):
    config = OmegaConf.to_container(compose_train([f"init={init}", "model=convnet"]), resolve=True)
    net = build.model(config["model"], (3, 8, 8), 10, config["init"])
    assert torch.isfinite(net(torch.rand(2, 3, 8, 8))).all()


@pytest.mark.parametrize("augment", options("augment"))
def test_every_augmentation_keeps_shape(compose_train, augment):
    config = OmegaConf.to_container(compose_train([f"augment={augment}"]), resolve=True)
    op = build.augment(config["augment"])
    x = torch.rand(5, 3, 16, 16)
    assert op(x).shape == x.shape


@pytest.mark.parametrize("preprocess", options("preprocess"))
def test_every_preprocess_fits(compose_train, preprocess):
    config = OmegaConf.to_container(compose_train([f"preprocess={preprocess}"]), resolve=True)
    norm = build.normalizer(config["preprocess"], torch.rand(20, 3, 4, 4))
    assert norm(torch.rand(2, 3, 4, 4)).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("data", options("data"))
def test_every_dataset_loads(compose_train, data, fake_cifar, fake_imagefolder):
    roots = {"cifar10": fake_cifar, "imagefolder": fake_imagefolder}
    overrides = [f"data={data}"] + ([f"data.root={roots[data]}"] if data in roots else [])
    config = OmegaConf.to_container(compose_train(overrides), resolve=True)
    splits = build.data_source(config["data"]).load(seed=0)
    assert len(splits.train) and len(splits.val) and len(splits.test)
    assert splits.num_classes >= 2 and len(splits.input_shape) == 3


def test_nested_group_overrides_read_like_keys():
    assert rewrite_group_overrides(["model.activation=elu", "model.hidden=[8]", "optimizer=sgd", "model.activation.alpha=0.5"]) == [
        "model/activation=elu",
        "model.hidden=[8]",
        "optimizer=sgd",
        "model.activation.alpha=0.5",
    ]
