"""The per-worker loop in-process (world size 1, no Ray): learning, checkpoints, resume."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf
import pytest
import torch

from components.engine.checkpoint import CorruptCheckpointError, read_meta
from pipelines.runtime import build
from pipelines.runtime.worker import LocalSession, run_training


def plain(compose_train, overrides):
    return OmegaConf.to_container(compose_train(overrides), resolve=True)


def test_in_process_training_learns_digits(compose_train, tmp_path):
    config = plain(compose_train, ["trainer.epochs=3"])
    session = LocalSession(checkpoint_root=str(tmp_path / "ckpt"))
    final = run_training(config, session)
    assert [r["epoch"] for r in session.reports] == [1, 2, 3]
    assert session.reports[0]["train/loss"] > final["train/loss"]
    assert final["val/acc"] > 0.85 and "test/acc" in final
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "lr", "train/images_per_s"} <= set(final)


def test_checkpoint_reloads_and_predicts_identically(compose_train, tmp_path):
    config = plain(compose_train, ["trainer.epochs=2", "model=convnet", "model.channels=[8]", "model.hidden=[16]"])
    session = LocalSession(checkpoint_root=str(tmp_path / "ckpt"))
    run_training(config, session)
    meta = read_meta(session.last_checkpoint)
    assert meta["epoch"] == 2 and meta["classes"] == [str(i) for i in range(10)]
    assert meta["normalizer"]["mode"] == "per_channel" and meta["config"]["model"]["channels"] == [8]
    net, normalizer, _ = build.model_from_checkpoint(session.last_checkpoint)
    net2, _, _ = build.model_from_checkpoint(session.last_checkpoint)
    x = torch.rand(16, 1, 8, 8)
    assert torch.equal(net(normalizer(x)), net2(normalizer(x)))


def test_resume_continues_from_the_checkpoint(compose_train, tmp_path):
    config = plain(compose_train, ["trainer.epochs=4"])
    full = LocalSession(checkpoint_root=str(tmp_path / "a"))
    run_training(config, full)
    first_half = LocalSession(checkpoint_root=str(tmp_path / "b"))
    run_training({**config, "trainer": {**config["trainer"], "epochs": 2}}, first_half)
    resumed = LocalSession(checkpoint_root=str(tmp_path / "c"), resume_from=first_half.last_checkpoint)
    run_training(config, resumed)
    assert [r["epoch"] for r in resumed.reports] == [3, 4]
    assert resumed.reports[-1]["val/acc"] == pytest.approx(full.reports[-1]["val/acc"], abs=0.05)


def test_resume_takes_a_checkpoint_newer_than_the_registered_one(compose_train, tmp_path, capsys):
    """A run stopped after a worker uploaded epoch 2's checkpoint but before Ray Train's
    controller registered it: Ray hands back epoch 1's; epoch 2's metrics are already logged."""
    config = plain(compose_train, ["trainer.epochs=2"])
    first = LocalSession(checkpoint_root=str(tmp_path / "ckpt"))
    run_training(config, first)
    registered = tmp_path / "ckpt" / "epoch_0001"
    resumed = LocalSession(resume_from=str(registered))
    run_training({**config, "trainer": {**config["trainer"], "epochs": 3}}, resumed)
    assert [r["epoch"] for r in resumed.reports] == [3]
    assert "newer than Ray Train's latest" in capsys.readouterr().out


def test_restarts_count_on_from_the_run_when_the_checkpoint_predates_the_last_restart(compose_train, tmp_path, capsys):
    """A second failure before the first checkpoint after a restart: the checkpoint says no
    restart yet, the MLflow run already counted one; this resume is the second."""
    from mlflow.tracking import MlflowClient

    from pipelines.runtime.context import RunContext

    config = plain(compose_train, ["trainer.epochs=1", "diagnostics=off"])
    first = LocalSession(checkpoint_root=str(tmp_path / "ckpt"))
    run_training(config, first)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("x", artifact_location=(tmp_path / "art").as_uri())).info.run_id
    client.set_tag(run_id, "raysitter.restarts", "1")
    resumed = LocalSession(resume_from=first.last_checkpoint)
    run_training({**config, "trainer": {**config["trainer"], "epochs": 2}}, resumed, RunContext(run_id=run_id, tracking_uri=uri, quiet=True))
    assert "at epoch 2 (restart 2)" in capsys.readouterr().out
    run = client.get_run(run_id)
    assert run.data.tags["raysitter.restarts"] == "2" and run.data.metrics["restarts"] == 2


def trained_with_truncated_weights(compose_train, tmp_path) -> tuple[dict, str]:
    """A one-epoch run's config and its only checkpoint, whose weights file is cut to 100 bytes."""
    config = plain(compose_train, ["trainer.epochs=1"])
    session = LocalSession(checkpoint_root=str(tmp_path / "ckpt"))
    run_training(config, session)
    weights = Path(session.last_checkpoint) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return config, session.last_checkpoint


def test_truncated_checkpoint_is_rejected(compose_train, tmp_path):
    _, checkpoint = trained_with_truncated_weights(compose_train, tmp_path)
    with pytest.raises(CorruptCheckpointError, match="model.safetensors"):
        build.model_from_checkpoint(checkpoint)


def test_a_corrupt_latest_checkpoint_is_skipped_for_the_previous_one(compose_train, tmp_path, capsys):
    config = plain(compose_train, ["trainer.epochs=3"])
    first = LocalSession(checkpoint_root=str(tmp_path / "ckpt"))
    run_training(config, first)
    latest = Path(first.last_checkpoint)  # epoch_0003, beside epoch_0001 and epoch_0002
    state = latest / "train_state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # a half-written file
    resumed = LocalSession(resume_from=str(latest))
    run_training({**config, "trainer": {**config["trainer"], "epochs": 4}}, resumed)
    out = capsys.readouterr().out
    assert "skipping a corrupt checkpoint" in out and "train_state.pt" in out and "epoch_0002 (epoch 2)" in out
    assert [r["epoch"] for r in resumed.reports] == [3, 4]  # epoch 3 redone from epoch 2's state


def test_resume_refuses_when_no_checkpoint_reads_back(compose_train, tmp_path):
    config, checkpoint = trained_with_truncated_weights(compose_train, tmp_path)
    with pytest.raises(CorruptCheckpointError, match=r"cannot read model.safetensors.*no other readable checkpoint.*Fix: delete"):
        run_training(config, LocalSession(resume_from=checkpoint))
