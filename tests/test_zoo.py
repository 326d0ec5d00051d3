"""Bundles, transfer learning and ensembles in-process (no Ray, no server)."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf
import pytest
import torch

from components.ensembling import EnsembleForward, evaluate_forward
from components.zoo import BundleError, bundle_info, load_bundle, verify_bundle, write_bundle
from components.zoo.bundle import manifest_digest
from components.zoo.registry import ZooError, ZooRef
from components.engine.checkpoint import read_meta
from pipelines.runtime import build
from pipelines.runtime.context import RunContext, ZooSource
from pipelines.runtime.worker import LocalSession, run_training

SMALL_CONVNET = ["model=convnet", "model.channels=[8]", "model.hidden=[16]"]


def plain(compose_train, overrides, config_name="train"):
    return OmegaConf.to_container(compose_train(overrides, config_name), resolve=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small ConvNet trained 2 epochs on digits 0–4, and its bundle."""
    from hydra import compose, initialize_config_dir

    from pipelines.runtime.app import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*SMALL_CONVNET, "trainer.epochs=2", "data.classes=[0,1,2,3,4]", "diagnostics=off"])
    config = OmegaConf.to_container(cfg, resolve=True)
    root = tmp_path_factory.mktemp("trained")
    session = LocalSession(checkpoint_root=str(root / "ckpt"))
    run_training(config, session)
    meta = read_meta(session.last_checkpoint)
    net, _, _ = build.model_from_checkpoint(session.last_checkpoint)
    bundle = write_bundle(root / "bundle", net.state_dict(), bundle_info(meta, run_id="r1"))
    return {"config": config, "checkpoint": session.last_checkpoint, "bundle": bundle, "net": net, "meta": meta}


def test_bundle_round_trip_predicts_identically(trained):
    info = verify_bundle(trained["bundle"])
    assert info["classes"] == ["0", "1", "2", "3", "4"] and info["preprocess"]["mode"] == "per_channel"
    assert info["input_shape"] == [1, 8, 8] and "val/acc" in info["metrics"] and info["source"]["run_id"] == "r1"
    manifest = json.loads((trained["bundle"] / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "bundle.json"}
    net, normalizer, _ = load_bundle(trained["bundle"])
    x = torch.rand(32, 1, 8, 8)
    original, original_norm, _ = build.model_from_checkpoint(trained["checkpoint"])
    assert torch.equal(net(normalizer(x)), original(original_norm(x)))


@pytest.mark.parametrize("damage", ["flip_weight_byte", "truncate_weights", "edit_info", "drop_file"])
def test_tampered_bundle_fails_the_hash_check(trained, tmp_path, damage):
    import shutil

    copy = Path(shutil.copytree(trained["bundle"], tmp_path / "copy"))
    weights = copy / "model.safetensors"
    if damage == "flip_weight_byte":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "truncate_weights":
        weights.write_bytes(weights.read_bytes()[:200])
    elif damage == "edit_info":
        info = json.loads((copy / "bundle.json").read_text())
        info["classes"] = list("abcde")
        (copy / "bundle.json").write_text(json.dumps(info))
    else:
        weights.unlink()
    with pytest.raises(BundleError, match="hash check|missing"):
        load_bundle(copy)


def test_bundle_write_is_atomic(tmp_path):
    """A failing write leaves the previous bundle as it was and no temporary folder behind."""
    net = torch.nn.Linear(2, 2)
    info = {"model": {"_target_": "torch.nn.Linear"}, "input_shape": [2], "classes": ["a", "b"], "preprocess": {}}
    good = write_bundle(tmp_path / "b", net.state_dict(), info)
    before = (good / "manifest.json").read_text()
    with pytest.raises(Exception):
        write_bundle(tmp_path / "b", {"w": object()}, info)  # not a tensor: fails mid-write
    assert (good / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


@pytest.mark.parametrize("text,expected", [("digits", ZooRef("digits")), ("digits@champion", ZooRef("digits", alias="champion")), ("digits/3", ZooRef("digits", version="3"))])
def test_zoo_references_parse(text, expected):
    assert ZooRef.parse(text) == expected and str(expected) == text


@pytest.mark.parametrize("text", ["digits/x", "bad name", "@alias", ""])
def test_bad_zoo_references_are_refused(text):
    with pytest.raises(ZooError):
        ZooRef.parse(text)


def finetune_config(compose_train, trained, strategy, epochs=2):
    config = plain(compose_train, [*SMALL_CONVNET, f"trainer.epochs={epochs}", "data.classes=[5,6,7,8,9]", "data.train_per_class=10",
                                   "diagnostics=off", f"finetune.strategy={strategy}", "zoo=digits@champion"], "finetune")
    zoo = ZooSource(ref="digits@champion", path=str(trained["bundle"]), tracking_uri="unused", strategy=strategy, lr_scale=0.1,
                    digest=manifest_digest(trained["bundle"]))
    return config, RunContext(zoo=zoo)


def weights_after_finetuning(compose_train, trained, strategy, tmp_path):
    session = LocalSession(checkpoint_root=str(tmp_path / strategy))
    config, context = finetune_config(compose_train, trained, strategy)
    run_training(config, session, context)
    net, normalizer, meta = build.model_from_checkpoint(session.last_checkpoint)
    pre = {k: v for k, v in trained["net"].state_dict().items()}
    return net.state_dict(), pre, normalizer, meta


def test_head_strategy_changes_only_the_last_layer(compose_train, trained, tmp_path):
    after, pre, normalizer, meta = weights_after_finetuning(compose_train, trained, "head", tmp_path)
    changed = sorted(k for k in pre if k.startswith("head.") or not torch.equal(after[k], pre[k]))
    assert changed == ["head.bias", "head.weight"]
    assert not torch.equal(after["head.weight"], pre["head.weight"])
    # the bundle's preprocessing statistics were reused, not recomputed on digits 5–9
    assert meta["normalizer"] == trained["meta"]["normalizer"]


def test_top_strategy_freezes_the_convolutional_body_bit_for_bit(compose_train, trained, tmp_path):
    after, pre, _, _ = weights_after_finetuning(compose_train, trained, "top", tmp_path)
    body = [k for k in pre if k.startswith("body.")]
    assert body and all(torch.equal(after[k], pre[k]) for k in body)  # incl. batch-norm statistics
    assert any(not torch.equal(after[k], pre[k]) for k in pre if k.startswith("classifier.") and "weight" in k)


def test_finetune_lr_groups_scale_pretrained_layers(compose_train, trained):
    from components.zoo import transfer

    config, _ = finetune_config(compose_train, trained, "full")
    net = build.model(config["model"], (1, 8, 8), 5)
    transfer.load_pretrained(net, trained["net"].state_dict())
    opt = build.optimizer(config["optimizer"], net, transfer.lr_scales(net, 0.1))
    lr = config["optimizer"]["lr"]
    by_param = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert all(by_param[id(p)] == pytest.approx(lr) for p in net.head.parameters())
    assert all(by_param[id(p)] == pytest.approx(lr * 0.1) for p in net.body.parameters())


def test_ensemble_of_copies_equals_the_model(trained):
    net, normalizer, _ = load_bundle(trained["bundle"])
    x = torch.rand(64, 1, 8, 8)
    ensemble = EnsembleForward([net, net, net], [normalizer] * 3)
    single = torch.log_softmax(net(normalizer(x)), dim=1)
    assert torch.allclose(ensemble(x), single, atol=1e-5)
    assert torch.equal(ensemble(x).argmax(1), single.argmax(1))
    from components.data.digits import DigitsSource

    test = DigitsSource(classes=[0, 1, 2, 3, 4]).load(trained["config"]["seed"]).test
    assert evaluate_forward(ensemble, test)["acc"] == pytest.approx(evaluate_forward(lambda x: net(normalizer(x)), test)["acc"])


def test_ema_weights_differ_from_the_raw_weights_and_evaluate(compose_train, tmp_path, monkeypatch):
    from components.ensembling import WeightAveraging
    from components.engine.checkpoint import load_weights
    from pipelines.runtime import worker

    config = plain(compose_train, ["trainer.epochs=3", "ensembling=ema", "ensembling.decay=0.9", "ensembling.export=false",
                                   "diagnostics=off", "model.batch_norm=true"])
    made = []
    original = worker.ensembling_callbacks
    monkeypatch.setattr(worker, "ensembling_callbacks", lambda cfg: made.extend(original(cfg)) or made)
    session = LocalSession(checkpoint_root=str(tmp_path / "ckpt"))
    final = run_training(config, session)
    assert isinstance(made[0], WeightAveraging)
    assert final["ema/test/acc"] > 0.8 and final["ema/val/acc"] > 0.8
    assert final["ema/gain_test_acc"] == pytest.approx(final["ema/test/acc"] - final["test/acc"])
    averaged = made[0].averaged.module.state_dict()
    raw = load_weights(build.model(config["model"], (1, 8, 8), 10), session.last_checkpoint).state_dict()  # export=false
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw if k.endswith("weight"))
    bn_means = [k for k in raw if k.endswith("running_mean")]
    assert bn_means and any(not torch.equal(averaged[k], raw[k]) for k in bn_means)  # recomputed for the averaged weights


def test_ema_export_puts_the_averaged_weights_in_the_checkpoint(compose_train, tmp_path):
    config = plain(compose_train, ["trainer.epochs=2", "ensembling=ema", "ensembling.decay=0.9", "diagnostics=off"])
    session = LocalSession(checkpoint_root=str(tmp_path / "ckpt"))
    final = run_training(config, session)
    meta = read_meta(session.last_checkpoint)
    assert meta["weights"] == "ema"
    net, normalizer, _ = build.model_from_checkpoint(session.last_checkpoint)
    from components.data.digits import DigitsSource

    test = DigitsSource().load(config["seed"]).test
    assert evaluate_forward(lambda x: net(normalizer(x)), test)["acc"] == pytest.approx(final["ema/test/acc"])


def test_snapshot_ensemble_keeps_one_snapshot_per_cycle(compose_train):
    # digits: 1257 training images / 128 = 10 steps an epoch; cyclic step_size_up 10 → 20-step cycles
    config = plain(compose_train, ["trainer.epochs=6", "ensembling=snapshots", "scheduler=cyclic", "scheduler.step_size_up=10",
                                   "optimizer=sgd", "optimizer.lr=0.01", "diagnostics=off"])
    final = run_training(config, LocalSession())
    assert final["snapshots/count"] == 3  # two cycle ends (steps 20, 40) + the final weights (60)
    assert final["snapshots/test/acc"] > 0.8
    assert final["snapshots/gain_test_acc"] == pytest.approx(final["snapshots/test/acc"] - final["test/acc"])


def test_scoped_tracking_uri_restores_the_users_variable(monkeypatch, tmp_path):
    """mlflow's own scoping unset a user's MLFLOW_TRACKING_URI after logging the final model, so
    `train … && finetune …` in one process (multirun, tests) lost the server."""
    import os

    import mlflow

    from components.tracking import scoped_tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    with scoped_tracking_uri(f"sqlite:///{tmp_path / 'x.db'}"):
        assert mlflow.get_tracking_uri().startswith("sqlite:")
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5999"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with scoped_tracking_uri(f"sqlite:///{tmp_path / 'x.db'}"):
        pass
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_a_new_embedded_store_is_mlflows_schema_copied_and_nothing_is_replaced(monkeypatch, tmp_path):
    """A new SQLite store starts from a cached copy of MLflow's empty schema (made by MLflow
    once): MLflow opens it, adds its Default experiment there, logs to it; a second call on the
    store, or a call on any other file at the path, leaves that file exactly as it was."""
    import mlflow

    from components.tracking import create_sqlite_store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    create_sqlite_store(uri)
    (template,) = (tmp_path / "cache" / "raysitter").glob(f"mlflow-{mlflow.__version__}-*-schema-*.db")
    assert (tmp_path / "new" / "mlflow.db").read_bytes() == template.read_bytes()
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["mlflow.db"]  # no temporary file left
    client = mlflow.MlflowClient(uri)
    (default,) = client.search_experiments()
    assert default.name == "Default"
    run = client.create_run(client.create_experiment("x", artifact_location=(tmp_path / "art").as_uri()))
    client.log_metric(run.info.run_id, "val/acc", 0.5)
    before = (tmp_path / "new" / "mlflow.db").read_bytes()
    create_sqlite_store(uri)
    assert (tmp_path / "new" / "mlflow.db").read_bytes() == before
    assert client.get_run(run.info.run_id).data.metrics == {"val/acc": 0.5}
    other = tmp_path / "notes.db"
    other.write_text("mine")
    create_sqlite_store(f"sqlite:///{other}")
    assert other.read_text() == "mine"


def test_snapshots_follow_epoch_restarts_of_cosine_annealing(compose_train):
    # restarts every 2 epochs: the lr falls in epochs 1–2, jumps back up for 3: a snapshot after epoch 2
    config = plain(compose_train, ["trainer.epochs=4", "ensembling=snapshots", "scheduler=cosine_restarts", "scheduler.T_0=2", "diagnostics=off"])
    final = run_training(config, LocalSession())
    assert final["snapshots/count"] == 2
