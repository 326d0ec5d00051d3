"""`hydra/launcher=ray`: a multirun's jobs run concurrently on Ray, through the installed console
script, from a folder that is not the project's. (The same submitted to the two-node cluster is in
test_cluster.py.)"""
from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

from mlflow.tracking import MlflowClient
import numpy as np
import pytest

from pipelines.runtime.app import with_launcher

BIN = Path(sys.executable).parent


def test_a_multirun_given_a_ray_address_uses_the_ray_launcher_unless_one_is_picked(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert with_launcher("train", ["-m", "seed=1,2"]) == ["-m", "seed=1,2"]  # no address: Hydra's basic launcher
    assert with_launcher("train", ["-m", "seed=1,2", "trainer.address=10.0.0.1:6379"])[-1] == "hydra/launcher=ray"
    assert with_launcher("train", ["seed=1"]) == ["seed=1"]  # not a multirun
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # what a submitted job's driver has
    assert with_launcher("finetune", ["-m", "zoo=a/1", "finetune.strategy=head,full"])[-1] == "hydra/launcher=ray"
    assert with_launcher("train", ["-m", "seed=1,2", "hydra/launcher=basic"])[-1] == "hydra/launcher=basic"
    assert "hydra/launcher=ray" not in with_launcher("tune", ["-m", "seed=1,2"])  # a sweep per job: not one Train run


def image_folder(root: Path, broken: bool = False) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.clip(np.array(colour) + rng.normal(0, 20, (12, 10, 3)), 0, 255).astype(np.uint8)).save(root / cls / f"{i}.png")
    if broken:  # past the files the driver's scan decodes: only the worker, loading every image, finds it
        (root / "red" / "9.png").write_bytes(b"not an image")
    return root


@pytest.mark.slow
def test_ray_launcher_runs_jobs_concurrently_and_a_job_failing_in_its_worker_leaves_the_others(tmp_path, joined_ray):
    good, bad = image_folder(tmp_path / "good"), image_folder(tmp_path / "bad", broken=True)
    out, elsewhere = tmp_path / "outputs", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, **joined_ray}  # the session's Ray (2 CPUs)
    env["RAYSITTER_OUTPUT_DIR"] = str(out)
    result = subprocess.run(
        [str(BIN / "raysitter"), "train", "-m", "data=imagefolder", f"data.root={good},{bad}", "data.image_size=[8,8]",
         "trainer.epochs=2,3", "diagnostics=off", "hydra/launcher=ray", "hydra.launcher.max_concurrent=2"],
        env=env, cwd=elsewhere, capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 1, log[-4000:]  # a job failed: the command as a whole did
    assert "4 job(s) on Ray (hydra/launcher=ray), at most 2 at a time" in log
    assert "4 runs, 2 failed job(s)" in result.stdout and "UnidentifiedImageError" in log
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = {int(r.data.tags["raysitter.multirun.job"]): r for r in client.search_runs([client.get_experiment_by_name("raysitter").experiment_id])}
    assert {job: r.info.status for job, r in runs.items()} == {0: "FINISHED", 1: "FINISHED", 2: "FAILED", 3: "FAILED"}
    assert runs[1].data.params["trainer.epochs"] == "3" and runs[1].data.params["data.root"] == str(good)
    assert len({r.info.run_name for r in runs.values()}) == 4 and len({r.data.tags["raysitter.multirun"] for r in runs.values()}) == 1
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs.values())
    assert max(spans[0][0], spans[1][0]) < min(spans[0][1], spans[1][1])  # the first two ran at the same time
    for t, _ in spans:  # never more than the two slots
        assert sum(start <= t < end for start, end in spans) <= 2
    assert "job0  epoch   2/2" in result.stdout  # concurrent jobs' epoch lines say whose they are
    assert not list(elsewhere.iterdir())  # nothing written where the command ran but under RAYSITTER_OUTPUT_DIR


@pytest.mark.slow
def test_ctrl_c_stops_the_ray_launchers_jobs_killed_and_resumable(tmp_path, joined_ray):
    """Ctrl-C at the driver's process group (pressed twice): every running job's run ends KILLED
    and says how to resume it; the command exits 130 (it said 2, "refused", before)."""
    import signal
    import time

    from tests.conftest import wait_for_epoch

    out = tmp_path / "outputs"
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, **joined_ray, "RAYSITTER_OUTPUT_DIR": str(out)}
    log = (tmp_path / "driver.log").open("w")
    proc = subprocess.Popen([str(BIN / "raysitter"), "train", "-m", "seed=1,2", "trainer.epochs=60", "diagnostics=off", "hydra/launcher=ray"],
                            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_epoch(out / "mlflow.db", 2, proc, timeout=240)
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = (tmp_path / "driver.log").read_text()
    assert "multirun interrupted: 2 running job(s) stopped" in text and text.count("""raysitter train 'resume=""") == 2, text[-3000:]
    # every cancelled job's end is read: Ray does not print it as an "Unhandled error" with a traceback
    assert "Unhandled error" not in text and "Traceback" not in text, text
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("raysitter").experiment_id])
    assert sorted(r.info.status for r in runs) == ["KILLED", "KILLED"]
