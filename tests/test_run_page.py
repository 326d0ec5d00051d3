"""What a run shows in MLflow: artifacts written by the per-worker loop (in-process, real store)."""
from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
import pytest

from pipelines.runtime.context import RunContext
from pipelines.runtime.worker import LocalSession, run_training


def test_run_artifacts_answer_how_it_went(compose_train, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("x", artifact_location=(tmp_path / "art").as_uri())).info.run_id
    config = OmegaConf.to_container(compose_train(["trainer.epochs=2", "augment=random_combo"]), resolve=True)
    run_training(config, LocalSession(), RunContext(run_id=run_id, tracking_uri=uri, quiet=True))
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"plots", "samples", "bundle", "confusion_matrix.csv"} <= top
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"plots/loss_curves.png", "plots/accuracy_curves.png", "plots/confusion_matrix.png"} <= plots
    assert [a.path for a in client.list_artifacts(run_id, "samples")] == ["samples/augmented.png"]
    import mlflow.artifacts

    csv = mlflow.artifacts.load_text(f"{(tmp_path / 'art').as_uri()}/{run_id}/artifacts/confusion_matrix.csv")
    rows = [line.split(",") for line in csv.strip().splitlines()]
    assert rows[0][1:] == [str(i) for i in range(10)]
    total = sum(int(v) for row in rows[1:] for v in row[1:])
    correct = sum(int(rows[1 + i][1 + i]) for i in range(10))
    metrics = client.get_run(run_id).data.metrics
    assert total == 270 and correct / total == metrics["test/acc"]  # digits test split: 15 % of 1797


def test_a_submitted_jobs_runs_carry_its_submission_id(monkeypatch, tmp_path):
    import json

    from components.tracking import environment_tags

    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert "ray.job_submission_id" not in environment_tags(tmp_path)
    # what Ray's job supervisor puts in a submitted driver's environment
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {}, "metadata": {"job_submission_id": "raysubmit_abc"}}))
    assert environment_tags(tmp_path)["ray.job_submission_id"] == "raysubmit_abc"


def test_runs_fill_mlflows_own_source_commit_user_and_dataset_fields(compose_train, tmp_path, monkeypatch):
    """What the MLflow UI shows as Source, commit, user and Datasets; a submitted job's commit
    and user come from the submitting side (its working_dir has no .git)."""
    import json
    import subprocess

    from pipelines.runtime import validate
    from pipelines.runtime.cluster import job_environment
    from pipelines.runtime.tracking import PROJECT_DIR, RunTracker

    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    run = validate.prepare_command("train", ["data=digits", f"output_dir={tmp_path}"])
    tracker = RunTracker(run.config, "fields", {"pipeline": "train"})
    tracker.log_dataset(run.config, "digits", run.sizes, run.num_classes)
    got = tracker.client.get_run(tracker.run_id)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_DIR, capture_output=True, text=True).stdout.strip()
    tags = got.data.tags
    assert tags["mlflow.source.name"] == "raysitter train" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.source.git.commit"] == commit and tags["mlflow.user"]
    (dataset,) = got.inputs.dataset_inputs
    assert dataset.dataset.name == "digits" and len(dataset.dataset.digest) == 10
    assert json.loads(dataset.dataset.profile) == {"classes": 10, "train": 1257, "val": 270, "test": 270}
    assert [(t.key, t.value) for t in dataset.tags] == [("mlflow.data.context", "training")]
    tracker.end("FINISHED")
    # a submitted job: the commit travels in the job's environment, taken here
    env = job_environment(None, str(tmp_path))
    assert env["RAYSITTER_GIT_COMMIT"].removesuffix("-dirty") == commit and env["RAYSITTER_USER"] == tags["mlflow.user"]
    monkeypatch.setenv("RAYSITTER_GIT_COMMIT", "abc123")
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"metadata": {"job_submission_id": "raysubmit_x"}}))
    from components.tracking import environment_tags

    submitted = environment_tags(tmp_path / "no-git-here", "raysitter train")
    assert submitted["mlflow.source.git.commit"] == "abc123" and submitted["mlflow.source.type"] == "JOB"


def test_early_stopping_on_a_flat_metric_ends_the_run_with_its_bundle(compose_train, tmp_path):
    """`early_stopping=plateau`: a learning rate too small to move val/loss by min_delta stops
    the run after `patience` stale epochs; that epoch is its last (test metrics, bundle, plots)."""
    from pipelines.runtime.training import record_outcome

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("x", artifact_location=(tmp_path / "art").as_uri())).info.run_id
    config = OmegaConf.to_container(compose_train(["trainer.epochs=20", "optimizer.lr=1e-9", "model.hidden=[16]", "early_stopping=plateau",
                                                   "early_stopping.patience=2", "early_stopping.min_delta=0.01"]), resolve=True)
    session = LocalSession()
    metrics = run_training(config, session, RunContext(run_id=run_id, tracking_uri=uri, quiet=True))
    assert [r["epoch"] for r in session.reports] == [1, 2, 3] and metrics["stopped_early"] == 1.0 and "test/acc" in metrics
    record_outcome(client, run_id, metrics)
    client.set_terminated(run_id, "FINISHED")
    run = client.get_run(run_id)
    assert run.data.tags["raysitter.outcome"] == "early_stopped" and run.data.tags["raysitter.stopped_epoch"] == "3"
    assert {"bundle", "plots"} <= {a.path for a in client.list_artifacts(run_id)} and run.info.status == "FINISHED"
    assert run.data.metrics["test/acc"] == metrics["test/acc"]


def test_the_bundle_holds_the_best_epoch_with_its_own_test_metrics(compose_train, tmp_path):
    """`tracking.best_metric`/`best_mode` pick the best epoch (here the *lowest* val/acc, so it
    is not the last); the bundle (what the zoo registers) holds its weights and its test
    metrics, the run logs them as best/*, and the tag says which epoch; `bundle_weights=last`
    keeps the last epoch's."""
    import mlflow.artifacts
    import torch

    from components.zoo import load_bundle
    from pipelines.runtime import build

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("x", artifact_location=(tmp_path / "art").as_uri())
    common = ["trainer.epochs=3", "model.hidden=[16]", "diagnostics=off", "tracking.best_metric=val/acc", "tracking.best_mode=min"]
    for weights, epoch in (("best", 1), ("last", 3)):
        run_id = client.create_run(experiment).info.run_id
        config = OmegaConf.to_container(compose_train([*common, f"tracking.bundle_weights={weights}"]), resolve=True)
        metrics = run_training(config, LocalSession(), RunContext(run_id=run_id, tracking_uri=uri, quiet=True))
        assert metrics["best/epoch"] == 1 and metrics["best/test/acc"] != metrics["test/acc"]  # the worst epoch, by design
        run = client.get_run(run_id)
        assert run.data.tags["raysitter.bundle_epoch"] == str(epoch) and run.data.metrics["best/test/acc"] == metrics["best/test/acc"]
        folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="bundle", dst_path=str(tmp_path / weights), tracking_uri=uri)
        net, normalizer, info = load_bundle(folder)
        expected = metrics["best/test/acc"] if weights == "best" else metrics["test/acc"]
        assert info["source"]["epoch"] == epoch and info["metrics"]["test/acc"] == expected
        test = build.load_splits(config["data"], config["seed"]).test.sample()
        with torch.no_grad():
            accuracy = int((net(normalizer(test.as_float())).argmax(1) == test.y).sum()) / len(test.y)
        assert accuracy == pytest.approx(expected, abs=1e-9)


def test_server_refuses_a_public_address_without_allowed_hosts(tmp_path, capsys):
    from pipelines import server

    assert server.main(["--host", "0.0.0.0", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--allowed-hosts" in err and "`--host`" in err
    assert not (tmp_path / "mlflow.db").exists()


def test_server_refuses_folders_it_could_not_write_before_it_starts(tmp_path, capsys):
    """A store or artifact folder that cannot be one (a file on its way) and an address with a
    slash missing, which would have become a local folder named `s3:`."""
    from pipelines import server
    from tests.conftest import free_port

    (tmp_path / "file").write_text("not a folder")
    port = str(free_port())
    for args, key, said in ((["--output-dir", str(tmp_path / "file")], "--output-dir", "is a file"),
                            (["--backend-store-uri", f"sqlite:///{tmp_path}/file/m.db"], "--backend-store-uri", "is a file"),
                            (["--artifacts-destination", f"{tmp_path}/file/a"], "--artifacts-destination", "which is a file"),
                            (["--artifacts-destination", "s3:/bucket/x"], "--artifacts-destination", "slash missing")):
        assert server.main(["--port", port, "--output-dir", str(tmp_path / "out"), *args]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"error in `{key}`" in err and said in err and " Fix: " in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing made, no folder named s3:


def test_ui_without_a_store_says_how_to_make_one(tmp_path, capsys):
    from pipelines import ui

    assert ui.main(["--output-dir", str(tmp_path / "none")]) == 2
    assert "raysitter train" in capsys.readouterr().err


@pytest.mark.slow
def test_ui_refuses_a_taken_port_and_sigterm_stops_its_whole_process_tree(tmp_path, capsys):
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from pipelines import ui
    from tests.conftest import free_port

    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # a store to serve
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        assert ui.main(["--port", str(taken), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"port {taken}" in err and "--port" in err and "MLflow UI on" not in capsys.readouterr().out

    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "raysitter"), "ui", "--port", str(port), "--output-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if "MLflow UI on" in line:
                break
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:  # answering once announced
            assert r.status == 200
        tree = descendants(proc.pid)
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() for pid in tree]
        # the mlflow server and its one worker (--workers 1); not MLflow's job runner (Huey consumers)
        assert 1 <= len(tree) <= 3 and not [c for c in commands if "huey" in c], commands
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # Ctrl-C pressed again while it stops: the stop goes on, no traceback
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "stopped" in out and "Traceback" not in out, out[-3000:]
    alive = [pid for pid in tree if Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]]
    assert not alive, [Path(f"/proc/{pid}/cmdline").read_text() for pid in alive]
    from pipelines.runtime.serve import port_taken

    assert port_taken("127.0.0.1", port) is None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


def test_run_description_says_what_how_it_went_and_how_to_reproduce():
    from pipelines.runtime.training import describe

    config = {"trainer": {"epochs": 3, "num_workers": 2, "batch_size": 64}, "optimizer": {"lr": 0.01}, "model": {"_target_": "x.MLP"}}
    choices = {"model": "mlp", "model/activation": "elu", "optimizer": "sgd", "scheduler": "step", "data": "digits"}
    tags = {"pipeline": "train", "command": "raysitter train optimizer=sgd optimizer.lr=0.01"}
    text = describe(config, choices, tags, RunContext(), {"epoch": 3, "val/acc": 0.9, "test/acc": 0.88, "train/acc": 0.95, "gap/train_val_acc": 0.05,
                                             "ema/test/acc": 0.89}, 12.0)
    assert "mlp (elu)" in text and "sgd lr 0.01" in text and "2 worker(s)" in text
    assert "val/acc **0.9000**" in text and "gap +0.0500" in text and "ema test/acc 0.8900" in text
    assert "    raysitter train optimizer=sgd optimizer.lr=0.01" in text  # a markdown code block
    diverged = describe(config, choices, tags, RunContext(), {"epoch": 2, "diverged": 1.0, "train/loss": float("nan")}, 3.0)
    assert "**diverged** at epoch 2" in diverged


def test_run_names_stay_short_and_never_hold_a_path():
    from pipelines.runtime.schema import SAFE_NAME
    from pipelines.runtime.training import run_name

    choices = {"model": "convnet", "model/activation": "relu", "optimizer": "adam", "data": "imagefolder"}
    overrides = ["data=imagefolder", "data.root=/home/me/photos/holiday", "data.image_size=[32,32]", "optimizer.lr=0.01",
                 "trainer.epochs=40", "model.hidden=[512,512,512,512]", "tracking.experiment=x"]
    name = run_name({"tracking": {"run_name": None}}, choices, "train", overrides)
    assert name.startswith("train-convnet-relu-adam-imagefolder-image_size=[32,32]-lr=0.01-epochs=40-20")
    assert "photos" not in name and "/" not in name and "512" not in name and len(name) < 90 and SAFE_NAME.match(name)


def test_the_driver_draws_progress_from_what_worker_0_reports(tmp_path):
    """Within a long epoch worker 0 writes how far it has come (`progress/epoch`); the driver
    polls it and, when its output is not a terminal, prints a plain line."""
    import time
    from types import SimpleNamespace

    from components.tracking.mlflow_utils import PROGRESS_METRIC, MlflowStepProgress
    from pipelines.runtime.progress import EpochProgress

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("x", artifact_location=(tmp_path / "art").as_uri())).info.run_id
    reporter = MlflowStepProgress(uri, run_id, every_s=0, after_s=0)
    loop = SimpleNamespace(train=list(range(100)), world_size=1, batch_size=10, epoch=2, step=10)
    reporter.on_fit_start(loop)
    lines: list[str] = []
    with EpochProgress(SimpleNamespace(uri=uri, run_id=run_id), epochs=5, tty=False, poll_s=0.05, plain_every_s=0, print_fn=lambda text, flush=True: lines.append(text)):
        reporter.on_step_end(loop, 15, None)  # 5 of 10 steps into epoch 2
        deadline = time.time() + 10
        while not lines and time.time() < deadline:
            time.sleep(0.05)
    assert client.get_run(run_id).data.metrics[PROGRESS_METRIC] == 1.5
    assert lines[0] == "epoch   2/5  50% of its steps done"
