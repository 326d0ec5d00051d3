"""Babysitting: preflight checks, live diagnostics, divergence, the init study."""
from __future__ import annotations

import math

import numpy as np
from omegaconf import OmegaConf
import pytest
import torch
from torch import nn

from components.diagnostics import Diagnostics, initial_loss, lr_range_test, overfit_tiny, regularization_raises_loss
from components.diagnostics.diagnostics import activation_stats, update_ratio
from components.diagnostics.init_study import layer_activations
from components.engine.loop import TrainLoop
from components.init import WeightInit
from components.data import Split
from components.preprocess import Normalizer
from pipelines.runtime.probes import probe_configs, run_probes
from pipelines.runtime.worker import LocalSession, run_training


def probes(compose_train, overrides):
    return run_probes(*probe_configs("check", overrides))


def by_key(report):
    return {r["key"]: r for r in report["results"]}


def test_a_correct_model_passes_every_check(compose_train):
    report = probes(compose_train, [])
    results = by_key(report)
    assert all(r["status"] == "PASS" for r in results.values()), results
    assert results["initial_loss"]["values"]["initial_loss"] == pytest.approx(math.log(10), rel=0.15)
    lo, hi = report["suggested"]
    assert lo < 1e-3 < hi  # Adam's default lr lies in the range where the loss falls
    verdicts = [r["verdict"] for r in report["lr_rows"]]
    assert verdicts[0] == "too small" and "falls" in verdicts and verdicts[-1] == "explodes"


def test_all_zero_init_fails_regularisation_and_overfit(compose_train):
    results = by_key(probes(compose_train, ["init=zeros"]))
    assert results["regularization"]["status"] == "FAIL"
    assert results["overfit_tiny"]["status"] == "FAIL"


class Scaled(nn.Module):
    def __init__(self, net: nn.Module, factor: float) -> None:
        super().__init__()
        self.net, self.factor = net, factor

    def forward(self, x):
        return self.net(x) * self.factor


def test_logits_scaled_by_100_fail_the_initial_loss_check():
    torch.manual_seed(0)
    x, y = torch.randn(256, 20), torch.randint(0, 10, (256,))
    net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 10))
    assert initial_loss(net, x, y, 10).status == "PASS"
    assert initial_loss(Scaled(net, 100.0), x, y, 10).status == "FAIL"
    assert regularization_raises_loss(net, x, y).status == "PASS"


def test_overfit_and_range_test_on_a_small_problem():
    torch.manual_seed(0)
    x, y = torch.randn(20, 10), torch.arange(20) % 5

    def make_model():
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 5))

    def make_opt(model, lr):
        return torch.optim.Adam(model.parameters(), lr=lr or 1e-2)

    assert overfit_tiny(make_model, make_opt, x, y).status == "PASS"
    result, rows, suggested = lr_range_test(make_model, make_opt, x, y, np.logspace(-6, 2, 9), steps=15, batch_size=20, configured_lr=1e-2)
    assert [r["lr"] for r in rows] == pytest.approx(list(np.logspace(-6, 2, 9)))
    assert result.status == "PASS" and suggested[0] < 1e-2 < suggested[1]


def test_update_ratio_and_activation_stats_match_a_hand_computation():
    before = torch.tensor([[3.0, 4.0]])  # ‖W‖ = 5
    after = torch.tensor([[3.0, 4.03]])  # ‖ΔW‖ = 0.03
    assert update_ratio(before, after) == pytest.approx(0.006, rel=1e-4)
    out = torch.tensor([[0.0, 1.0, 0.0], [0.0, 3.0, 2.0]])  # unit 0 never fires
    stats = activation_stats(out, nn.ReLU())
    assert stats["dead"] == pytest.approx(1 / 3)
    assert stats["mean"] == pytest.approx(1.0) and stats["std"] == pytest.approx(float(out.std()))
    tanh = activation_stats(torch.tensor([[0.995, -0.999, 0.5, 0.0]]), nn.Tanh())
    assert tanh["saturated"] == pytest.approx(0.5)


def test_diagnostics_measure_a_tiny_network_during_training():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    logged = []
    diag = Diagnostics(every_n_steps=1, log=lambda m, step: logged.append((step, m)))
    x, y = torch.rand(8, 1, 2, 2), torch.randint(0, 2, (8,))
    split = Split(x, y)
    weight_before, bias_before = net[1].weight.detach().clone(), net[1].bias.detach().clone()
    loop = TrainLoop(
        model=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1), scheduler=None, train=split, val=split, test=split,
        normalizer=Normalizer(torch.zeros(1), torch.ones(1)), augment=nn.Identity(), batch_size=8, epochs=1,
        device=torch.device("cpu"), callbacks=[diag],
    )
    loop.fit()
    step, metrics = logged[0]
    expected = float((net[1].weight.detach() - weight_before).norm() / weight_before.norm())
    assert step == 1 and metrics["diag/update_ratio/1.weight"] == pytest.approx(expected, rel=1e-5)
    assert "diag/grad_norm/1.weight" in metrics and "diag/act/2/dead" in metrics
    first = diag.activations["2"][0][1]  # the ReLU's output in the forward pass of step 1
    hidden = torch.relu(x.flatten(1) @ weight_before.T + bias_before)
    assert first["mean"] == pytest.approx(float(hidden.mean()), rel=1e-5)
    assert first["dead"] == pytest.approx(float((hidden <= 0).all(dim=0).float().mean()))
    assert diag.histograms["2"].numel() == 24


def test_a_huge_learning_rate_ends_as_diverged_without_an_exception(compose_train):
    config = OmegaConf.to_container(compose_train(["optimizer=sgd", "optimizer.lr=1e3", "trainer.epochs=5"]), resolve=True)
    session = LocalSession()
    final = run_training(config, session)
    assert final["diverged"] == 1.0 and not math.isfinite(final["train/loss"])
    assert len(session.reports) < 5  # stopped early


def test_init_study_reproduces_the_lecture():
    def run(act, weight):
        return layer_activations(act, WeightInit(weight, bias=0.0), depth=10, width=500, num_samples=500)

    small = run(nn.Tanh, lambda w: nn.init.normal_(w, 0, 0.01))
    large = run(nn.Tanh, lambda w: nn.init.normal_(w, 0, 1.0))
    xavier = run(nn.Tanh, nn.init.xavier_normal_)
    relu_xavier = run(nn.ReLU, nn.init.xavier_normal_)
    relu_he = run(nn.ReLU, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))
    assert small[-1]["std"] < 1e-4  # collapses toward zero by layer 10
    assert all(r["std"] > 0.95 for r in large)  # saturated at ±1
    assert (large[-1]["values"].abs() > 0.99).float().mean() > 0.8
    assert xavier[-1]["std"] > 0.15 and xavier[-1]["std"] / xavier[0]["std"] > 0.3  # roughly kept
    assert relu_xavier[-1]["std"] < 0.1 * relu_xavier[0]["std"]  # ReLU with Xavier shrinks
    assert relu_he[-1]["std"] > 0.6 * relu_he[0]["std"]  # He keeps it


def test_far_off_update_ratios_and_dead_units_are_warned_once():
    warnings = []
    diag = Diagnostics(warn=warnings.append)
    diag.ratios["w"] = [(1, 0.5)]
    diag.activations["relu"] = [(1, {"dead": 0.9, "mean": 0.0, "std": 0.0})]
    diag.on_epoch_end(None, 1, {})
    diag.on_epoch_end(None, 2, {})
    assert len(warnings) == 2 and "lower optimizer.lr" in warnings[0] and "dead" in warnings[1]
