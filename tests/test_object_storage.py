"""Checkpoints and artifacts on object storage: a real S3-compatible server (moto_server) on
127.0.0.1, Ray Train writing there through `trainer.storage_path=s3://…`, `raysitter server`
keeping artifacts there."""
from __future__ import annotations

import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time

from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
import pytest

from tests.conftest import free_port, logged_epoch, processes_named, wait_for_epoch, wait_for_health, wait_for_metric

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def keys(s3_store, prefix: str) -> list[str]:
    pages = s3_store["client"].get_paginator("list_objects_v2").paginate(Bucket=s3_store["bucket"], Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_checkpoints_on_s3_survive_a_killed_worker_and_an_interrupted_driver(s3_store, tmp_path, joined_ray):
    """On the session's Ray (the warm path: tests/test_resume.py interrupts a command with a Ray
    of its own): its workers run below this test's process."""
    out = tmp_path / "outputs"
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, **joined_ray}
    env.update(s3_store["env"], RAYSITTER_OUTPUT_DIR=str(out), PYTHONUNBUFFERED="1")
    epochs, where = 20, f"s3://{s3_store['bucket']}/checkpoints"
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen([str(BIN / "raysitter"), "train", f"trainer.epochs={epochs}", f"trainer.storage_path={where}",
                              "trainer.max_failures=1", "diagnostics=off"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    wait_for_epoch(out / "mlflow.db", 3, first, timeout=240)
    (worker,) = processes_named([os.getpid()], "RayTrainWorker")
    os.kill(worker, signal.SIGKILL)  # Ray Train restarts the worker group from the checkpoint in S3
    # restarted (epochs may have run on between the poll and the kill), then trained on
    wait_for_metric(out / "mlflow.db", "restarts", 1, first, timeout=240)
    wait_for_epoch(out / "mlflow.db", logged_epoch(out / "mlflow.db") + 2, first, timeout=240)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 130
    text = (tmp_path / "first.log").read_text()
    assert re.search(r"resumed from \S+ at epoch \d+ \(restart 1\)", text), text[-3000:]
    key = re.search(r"""raysitter train 'resume="(\S+)"'""", text).group(1)
    stored = keys(s3_store, f"checkpoints/{key}/")
    assert any("/checkpoint_" in k for k in stored), stored[:20]
    assert not list(out.rglob("checkpoint_*")) and not list(out.rglob("*.safetensors"))  # nothing of them on the local disk
    stopped_at = logged_epoch(out / "mlflow.db")

    resumed = subprocess.run([str(BIN / "raysitter"), "train", f'resume="{key}"'], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    at = int(re.search(r"resumed from \S+ at epoch (\d+)", resumed.stdout).group(1))
    assert stopped_at <= at <= stopped_at + 1  # epochs are logged before their checkpoint: only one not yet uploaded is redone
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("raysitter").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["epoch"] == epochs
    assert run.data.tags["checkpoint"].startswith(f"{where}/{key}/checkpoint_")
    models = client.search_logged_models([run.info.experiment_id])
    assert run.info.run_id in {m.source_run_id for m in models}  # the final model, built from the checkpoint read back from S3
    assert not list(out.rglob("checkpoint_*"))


def test_a_corrupt_latest_checkpoint_in_s3_is_skipped_for_the_previous_one(s3_store, compose_train, tmp_path, monkeypatch, capsys):
    import pyarrow.fs
    import ray.train

    from pipelines.runtime import storage
    from pipelines.runtime.worker import LocalSession, readable_checkpoint, run_training

    for k, v in s3_store["env"].items():
        monkeypatch.setenv(k, v)
    config = OmegaConf.to_container(compose_train(["trainer.epochs=2", "diagnostics=off"]), resolve=True)
    session = LocalSession(checkpoint_root=str(tmp_path / "local"))
    run_training(config, session)
    fs = storage.filesystem({})
    run = f"{s3_store['bucket']}/corrupt-run"
    for epoch, local in enumerate(sorted((tmp_path / "local").iterdir()), start=1):  # as Ray names them, oldest first
        pyarrow.fs.copy_files(str(local), f"{run}/checkpoint_2026-11-30_12-00-0{epoch}.000000",
                              source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=fs)
    latest = f"{run}/checkpoint_2026-11-30_12-00-02.000000"
    with fs.open_output_stream(f"{latest}/train_state.pt") as f:  # cut short, as by a node lost mid-upload
        f.write(b"\x80\x02half")
    chosen = readable_checkpoint(ray.train.Checkpoint(latest, filesystem=fs))
    assert chosen.endswith("checkpoint_2026-11-30_12-00-01.000000")
    assert "skipping a corrupt checkpoint" in capsys.readouterr().out


def test_a_missing_bucket_is_refused_before_ray_starts(s3_store, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "RAY_ADDRESS": "local"}  # a Ray of its own
    env.update(s3_store["env"], RAYSITTER_OUTPUT_DIR=str(tmp_path / "outputs"))
    started = time.monotonic()
    refused = subprocess.run([str(BIN / "raysitter"), "train", "trainer.storage_path=s3://no-such-bucket/x"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "trainer.storage_path" in refused.stderr and "no-such-bucket" in refused.stderr
    assert "Traceback" not in refused.stderr and time.monotonic() - started < 30
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


def test_server_keeps_artifacts_on_s3_and_serves_a_zoo_round_trip(s3_store, tmp_path, joined_ray):
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, **s3_store["env"]}
    port = free_port()
    server_log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([str(BIN / "raysitter"), "server", "--port", str(port), "--output-dir", str(tmp_path / "server"),
                               "--artifacts-destination", f"s3://{s3_store['bucket']}/mlartifacts"],
                              env=env, cwd=tmp_path, stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, server, lambda: (tmp_path / "server.log").read_text(), "raysitter server")
        job = tmp_path / "job"
        job.mkdir()
        trained = subprocess.run([str(BIN / "raysitter"), "train", "trainer.epochs=2", "diagnostics=off", f"tracking.uri={url}",
                                  "tracking.register_as=s3digits", "tracking.register_alias=champion"], env={**env, **joined_ray, "RAYSITTER_OUTPUT_DIR": str(job / "outputs")},
                                 cwd=job, capture_output=True, text=True, timeout=600)
        assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
        assert "zoo          s3digits/1 (alias champion)" in trained.stdout
        assert any(k.endswith("bundle.json") for k in keys(s3_store, "mlartifacts/"))  # the artifacts went to S3
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        pulled = subprocess.run([str(BIN / "raysitter"), "zoo", "pull", "s3digits@champion", "--dest", "model"],
                                env={**env, "MLFLOW_TRACKING_URI": url}, cwd=elsewhere, capture_output=True, text=True, timeout=300)
        assert pulled.returncode == 0, pulled.stdout[-2000:] + pulled.stderr[-2000:]
        assert (elsewhere / "model" / "bundle.json").exists() and list((elsewhere / "model").glob("*.safetensors"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
