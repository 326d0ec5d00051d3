"""`raysitter train` end to end on a real local Ray with DDP workers and a real MLflow store."""
from __future__ import annotations

import time

from mlflow.tracking import MlflowClient
import pytest
import torch

from pipelines import train
from pipelines.runtime import build

pytestmark = pytest.mark.slow


def only_run(output_dir):
    client = MlflowClient(f"sqlite:///{output_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("raysitter")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


# A non-default choice in every group, so the Ray path is exercised with the whole playbook.
MIXED = [
    "model=convnet", "model.channels=[8,16]", "model.hidden=[32]", "model.activation=maxout", "model.pool=fractional",
    "model.dropout=0.1", "model.drop_connect=0.1", "init=he", "optimizer=sgd", "scheduler=inverse_time",
    "augment=random_combo", "preprocess=per_dataset",
]


def test_two_worker_run_lands_in_mlflow_with_a_reloadable_checkpoint(ray_session, output_dir, capsys):
    began_ms = time.time() * 1000
    train.main(["trainer.num_workers=2", "trainer.epochs=2", "trainer.batch_size=64", *MIXED], prog="raysitter train")
    out = capsys.readouterr().out
    assert "epoch   2/2" in out and "MLflow run" in out and "test/acc" in out

    client, run = only_run(output_dir)
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert [m.step for m in history] == [1, 2]
    for key in ("train/loss", "train/acc", "val/loss", "lr", "train/images_per_s", "test/acc"):
        assert client.get_metric_history(run.info.run_id, key), key
    assert run.data.params["optimizer.lr"] == "0.1" and run.data.params["trainer.num_workers"] == "2"
    assert run.data.params["model.activation._target_"] == "components.model.Maxout"
    assert int(run.data.params["summary.num_parameters"]) > 1000
    assert run.data.tags["git.commit"] and run.data.tags["version.ray"] and "optimizer=sgd" in run.data.tags["hydra.overrides"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "model_summary.txt"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {f"plots/{n}.png" for n in ("loss_curves", "accuracy_curves", "update_ratios", "activation_histograms", "confusion_matrix")}
    assert {"samples/augmented.png"} == {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
    assert "confusion_matrix.csv" in artifacts
    ratios = [k for k in run.data.metrics if k.startswith("diag/update_ratio/")]
    assert ratios and all(0 < run.data.metrics[k] < 1 for k in ratios)
    assert any(k.startswith("diag/act/") and k.endswith("/mean") for k in run.data.metrics)
    # Ray Train's actors for the run (GCS's actor table): no datasets manager for a trainer given
    # no Ray Datasets, no preemption watcher on a Ray of this machine, no placement-group cleaner
    # for a command's one fit (ray_runner.raysitter_trainer)
    from ray._private.state import actors

    started = {a["ActorClassName"] for a in actors().values() if a["StartTime"] >= began_ms}  # this run's (the session's Ray had others)
    assert {"TrainController", "RayTrainWorker"} <= started, started
    assert not {"DatasetManager", "PreemptionWatcher", "PlacementGroupCleaner"} & started, started

    # The checkpoint reloads and predicts exactly like the model MLflow logged.
    import mlflow.pytorch

    checkpoint = run.data.tags["checkpoint"]
    net, normalizer, meta = build.model_from_checkpoint(checkpoint)
    assert meta["epoch"] == 2
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(f"sqlite:///{output_dir / 'mlflow.db'}"):
        logged = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")  # a torch.export program
    x = torch.rand(32, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(net(normalizer(x)), logged(x), atol=1e-5)


def test_a_failing_worker_ends_the_run_failed(ray_session, output_dir, fake_imagefolder, capsys):
    (fake_imagefolder / "red" / "broken.png").write_bytes(b"not a png")  # found by name, fails to decode in the worker
    with pytest.raises(SystemExit) as exit_info:
        train.main(["trainer.epochs=1", "data=imagefolder", f"data.root={fake_imagefolder}"], prog="raysitter train")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "training failed" in err and "cannot identify image file" in err  # the worker's own message reaches the user
    _, run = only_run(output_dir)
    assert run.info.status == "FAILED"


def test_a_run_that_cannot_be_opened_stops_the_fit_started_beside_it(ray_session, output_dir, monkeypatch, capsys):
    """The MLflow run opens beside the fit's start and worker 0 waits for its id (announce.py):
    when opening it fails, worker 0 stops waiting, the fit ends, the run is FAILED and the
    store's own error is what the command reports."""
    from mlflow.exceptions import MlflowException

    from pipelines.runtime.tracking import RunTracker

    def refused(self, *args, **kwargs):
        raise MlflowException("the store refused the dataset")

    monkeypatch.setattr(RunTracker, "log_dataset", refused)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["trainer.epochs=1", "diagnostics=off"], prog="raysitter train")
    assert exit_info.value.code == 1 and "the store refused the dataset" in capsys.readouterr().err
    _, run = only_run(output_dir)
    assert run.info.status == "FAILED"


def test_the_run_id_reaches_worker_0_through_rays_store(ray_session):
    from pipelines.runtime import announce

    announce.publish("a-run", "0123abcd")
    assert announce.wait("a-run", timeout_s=1) == "0123abcd"
    announce.forget("a-run")
    with pytest.raises(announce.NotAnnounced, match="within"):
        announce.wait("a-run", timeout_s=0.2)
    announce.publish_failure("b-run", "no store")
    with pytest.raises(announce.NotAnnounced, match="no store"):
        announce.wait("b-run", timeout_s=1)
    announce.forget("b-run")


def test_two_runs_with_one_name_both_train_from_scratch(ray_session, output_dir, monkeypatch, capsys):
    """A reused tracking.run_name starts a fresh run (its own Ray storage), says how to continue
    the earlier one, and leaves no tracking URI behind for a later job or child process."""
    import os

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    train.main(["trainer.epochs=2", "diagnostics=off", "tracking.run_name=baseline", "optimizer=adam"], prog="raysitter train")
    # the second run also shows three settings acting: fewer checkpoints kept, no bundle, no model
    train.main(["trainer.epochs=2", "diagnostics=off", "tracking.run_name=baseline", "optimizer=sgd", "trainer.checkpoints_to_keep=1",
                "tracking.log_bundle=false", "tracking.log_model=false"], prog="raysitter train")
    out = capsys.readouterr().out
    assert "a run named 'baseline' exists already; this is a new run" in out and "resumed from" not in out
    assert "raysitter train resume=baseline-" in out
    client = MlflowClient(f"sqlite:///{output_dir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("raysitter").experiment_id], order_by=["attributes.start_time"])
    assert [r.data.params["optimizer._target_"] for r in runs] == ["torch.optim.Adam", "torch.optim.SGD"]
    for run in runs:
        assert run.info.status == "FINISHED" and run.info.run_name == "baseline"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]
    assert len({run.data.tags["checkpoint"].split("/ray_results/")[1].split("/")[0] for run in runs}) == 2
    from pathlib import Path

    kept = [len([p for p in Path(run.data.tags["checkpoint"]).parent.glob("checkpoint_*") if p.is_dir()]) for run in runs]
    assert kept == [2, 1]  # trainer.checkpoints_to_keep: 2 (default), then 1
    bundles = [any(a.path == "bundle" for a in client.list_artifacts(run.info.run_id)) for run in runs]
    assert bundles == [True, False]  # tracking.log_bundle
    models = {m.source_run_id for m in client.search_logged_models([runs[0].info.experiment_id])}
    assert runs[0].info.run_id in models and runs[1].info.run_id not in models  # tracking.log_model
    assert "MLFLOW_TRACKING_URI" not in os.environ
