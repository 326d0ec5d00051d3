"""Settings that do what they say: documented keys change what runs (docs/SETTINGS.md lists
every `search.*`, `trainer.*`, `check.*` and `tracking.*` key with the test that shows it acting
or the error that refuses it). In-process and fast; the ones that need Ray live beside the Ray
tests they extend."""
from __future__ import annotations

from omegaconf import OmegaConf
import pytest
import torch

from pipelines.runtime.context import RunContext


def plain(compose_train, overrides, config_name="train"):
    return OmegaConf.to_container(compose_train(overrides, config_name), resolve=True)


def test_check_settings_change_what_the_probes_measure_and_decide(compose_train):
    from pipelines.runtime.probes import probe_configs, run_probes

    common = ["check.lr_range.steps=2", "check.overfit_steps=60"]
    loose = run_probes(*probe_configs("check", [*common, "check.examples=64", "check.lr_range.points=3", "check.overfit_target_loss=1.0"]))
    strict = run_probes(*probe_configs("check", [*common, "check.examples=32", "check.lr_range.points=4", "check.lr_range.low=1e-3",
                                                 "check.lr_range.high=1", "check.initial_loss_tolerance=1e-6",
                                                 "check.regularization_strength=1e-12", "check.overfit_target_loss=1e-9",
                                                 "check.overfit_examples=8"]))
    by_key = lambda report: {r["key"]: r for r in report["results"]}  # noqa: E731
    a, b = by_key(loose), by_key(strict)
    assert len(loose["lr_rows"]) == 3 and len(strict["lr_rows"]) == 4  # check.lr_range.points
    assert strict["lr_rows"][0]["lr"] == pytest.approx(1e-3) and strict["lr_rows"][-1]["lr"] == pytest.approx(1.0)  # low, high
    assert a["initial_loss"]["values"]["initial_loss"] != b["initial_loss"]["values"]["initial_loss"]  # check.examples
    assert a["initial_loss"]["status"] == "PASS" and b["initial_loss"]["status"] == "FAIL"  # initial_loss_tolerance
    assert a["regularization"]["status"] == "PASS" and b["regularization"]["status"] == "FAIL"  # regularization_strength
    assert b["regularization"]["values"]["l2_penalty"] < 1e-6 < a["regularization"]["values"]["l2_penalty"]
    assert a["overfit_tiny"]["values"]["overfit_steps"] <= 60  # check.overfit_steps bounds the steps
    assert a["overfit_tiny"]["status"] == "PASS" and b["overfit_tiny"]["status"] != "PASS"  # overfit_target_loss


def test_resources_per_worker_cpu_sets_the_worker_threads(compose_train):
    from pipelines.runtime.worker import LocalSession, run_training

    before = torch.get_num_threads()
    try:
        config = plain(compose_train, ["trainer.epochs=1", "diagnostics=off", "model.hidden=[16]", "trainer.resources_per_worker.CPU=3"])
        run_training(config, LocalSession())
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_report_interval_reaches_ray_train_and_grid_points_shape_the_grid():
    from components.search import Dist
    from pipelines.runtime.ray_runner import ray_env
    from pipelines.runtime.sweep import stage_values

    assert ray_env({"report_interval_s": 0.5})["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.5"
    space = {"optimizer.lr": Dist("loguniform", (1e-4, 1e-1)), "scheduler": Dist("choice", ("cosine", "step"))}
    grid = stage_values(space, "grid", 4, samples=99, seed=0)  # search.method=grid, search.grid_points=4
    assert len(grid) == 8 and sorted({v["optimizer.lr"] for v in grid}) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    drawn = stage_values(space, "random", 4, samples=5, seed=7)  # search.method=random: the stage's samples, seeded
    assert len(drawn) == 5 and drawn == stage_values(space, "random", 4, samples=5, seed=7)
    assert all(1e-4 <= v["optimizer.lr"] <= 1e-1 and v["scheduler"] in ("cosine", "step") for v in drawn)


def test_trainer_settings_reach_ray_train(compose_train, tmp_path):
    """What raysitter hands Ray Train for trainer.* (Ray acts on them: tests/test_cluster.py
    shows placement and failures on a real cluster, tests/test_train_ray.py checkpoints kept)."""
    from pipelines.runtime.ray_runner import make_trainer

    config = plain(compose_train, ["trainer.num_workers=2", "trainer.max_failures=3", "trainer.checkpoints_to_keep=4",
                                   "trainer.placement_strategy=SPREAD", "trainer.log_level=INFO", "trainer.resources_per_worker.CPU=0.5"])
    config["output_dir"] = str(tmp_path)
    trainer = make_trainer(config, RunContext(), "settings")
    scaling, run = trainer.scaling_config, trainer.run_config
    assert scaling.num_workers == 2 and scaling.placement_strategy == "SPREAD" and scaling.resources_per_worker == {"CPU": 0.5}
    assert run.failure_config.max_failures == 3 and run.checkpoint_config.num_to_keep == 4
    assert run.storage_path == str(tmp_path / "ray_results")


def test_one_cpu_worker_gets_no_process_group_and_its_config_unpickles_without_torch(compose_train, tmp_path):
    """A lone CPU worker gets a backend that sets up no torch.distributed group, and the Ray
    Train controller, which unpickles it, need not import torch for it (≈ 2 s of every fit's
    start here); two workers, or a GPU, get Ray's TorchConfig."""
    import pickle
    import subprocess
    import sys

    from ray.train.torch import TorchConfig

    from pipelines.runtime.ray_runner import torch_config

    config = plain(compose_train, [])
    one = torch_config(config["trainer"])
    assert not isinstance(one, TorchConfig) and one.backend == "gloo" and one.framework.name == "TORCH"
    assert isinstance(torch_config({**config["trainer"], "num_workers": 2}), TorchConfig)
    assert torch_config({**config["trainer"], "use_gpu": True}).backend == "nccl"
    probe = "import pickle, sys; pickle.loads(sys.stdin.buffer.read()).backend_cls(); print('torch' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], input=pickle.dumps(one), capture_output=True, timeout=120)
    assert loaded.stdout.decode().strip() == "False", loaded.stderr.decode()[-2000:]


def test_an_interrupted_fit_stops_showing_ray_output_until_the_next_fit(monkeypatch):
    """After Ctrl-C, what Ray's processes print (a controller timing out on a Ray the same Ctrl-C
    stops: "Failed to send resource request" with a traceback, seen in CI) is not shown; a
    multirun's next fit shows it again, and RAYSITTER_RAY_LOGS=1 keeps it."""
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    from pipelines.runtime.ray_runner import PREEMPTION_WATCHER, raysitter_trainer

    class Fits:
        datasets, outcome = None, None

        def fit(self):
            if self.outcome:
                raise self.outcome
            return "result"

    shown: list[str] = []
    monkeypatch.setenv(PREEMPTION_WATCHER, "1")  # no Ray asked how many nodes it has
    monkeypatch.setattr(dispatcher, "handlers", [("ray_print_logs", shown.append)])
    trainer = raysitter_trainer(Fits)()
    trainer.outcome = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    dispatcher.emit("Failed to send resource request")
    trainer.outcome = None
    assert trainer.fit() == "result"
    dispatcher.emit("the next job's epoch")
    monkeypatch.setenv("RAYSITTER_RAY_LOGS", "1")
    trainer.outcome = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    dispatcher.emit("kept")
    assert shown == ["the next job's epoch", "kept"]


def test_a_composed_run_config_is_read_only_and_still_trains_pickles_and_serialises(tmp_path):
    import copy
    import json
    import pickle

    import yaml

    from pipelines.runtime.frozen import FrozenConfigError, thaw
    from pipelines.runtime.validate import compose_run
    from pipelines.runtime.worker import LocalSession, run_training

    config = compose_run("train", ["scheduler=cyclic", "optimizer.lr=0.002", "trainer.epochs=1", "diagnostics=off", "model.hidden=[16]"])
    assert config["scheduler"]["base_lr"] == 0.002 and config["scheduler"]["max_lr"] == pytest.approx(0.02)  # its own lr
    for change in (lambda: config["optimizer"].__setitem__("lr", 1.0), lambda: config["model"]["hidden"].append(8),
                   lambda: config.update(seed=1), lambda: config["trainer"].pop("epochs"),
                   lambda: copy.deepcopy(config).__setitem__("seed", 1)):
        with pytest.raises(FrozenConfigError):
            change()
    assert pickle.loads(pickle.dumps(config)) == config and json.loads(json.dumps(config)) == thaw(config)
    yaml.safe_dump(thaw(config))
    session = LocalSession(checkpoint_root=str(tmp_path / "ckpt"))
    run_training(config, session, RunContext(quiet=True))  # the per-worker loop never edits its config
    assert session.reports and session.last_checkpoint


def test_auto_trial_backend_starts_single_worker_trials_in_the_tune_function():
    """`search.trial_backend=auto` (lr_wd's default): `function` for one worker per trial, Ray
    Train for more; a backend named explicitly is kept."""
    from pipelines.runtime.sweep import trial_backend
    from pipelines.runtime.validate import compose_run

    one = compose_run("tune", ["search=lr_wd"])
    assert one["search"]["trial_backend"] == "auto" and trial_backend(one)[0] == "function"
    assert trial_backend(compose_run("tune", ["search=lr_wd", "trainer.num_workers=2"]))[0] == "train"
    forced = compose_run("tune", ["search=lr_wd", "search.trial_backend=train"])
    assert trial_backend(forced) == ("train", "search.trial_backend")
