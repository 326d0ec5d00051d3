"""A command interrupted with Ctrl-C ends its MLflow run KILLED and `raysitter train resume=NAME`
continues the same run from Ray Train's last checkpoint (real Ray, real processes; SIGTERM on
the warm path: tests/test_object_storage.py)."""
from __future__ import annotations

import os
from pathlib import Path
import re
import signal
import subprocess
import sys

from mlflow.tracking import MlflowClient
import pytest

from tests.conftest import logged_epoch, wait_for_epoch

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def test_ctrl_c_marks_the_run_killed_and_resume_continues_it(tmp_path, joined_ray, monkeypatch, capsys):
    """Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group (the driver
    and the Ray it started), pressed twice. Ray Train's own handler used to end such a run
    FAILED with exit 1 and no resume hint."""
    import time

    out = tmp_path / "outputs"
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "RAY_ADDRESS": "local"}  # a Ray of its own
    env.update(RAYSITTER_OUTPUT_DIR=str(out), PYTHONUNBUFFERED="1")
    epochs = 40
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen([str(BIN / "raysitter"), "train", f"trainer.epochs={epochs}", "diagnostics=off"],
                             env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_epoch(out / "mlflow.db", 4, first, timeout=240)
    os.killpg(first.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(first.pid, signal.SIGINT)  # pressed again while it stops
    assert first.wait(timeout=120) == 130, (tmp_path / "first.log").read_text()[-3000:]
    text = (tmp_path / "first.log").read_text()
    assert "Traceback" not in text and "interrupted; the MLflow run is marked KILLED" in text, text[-3000:]
    # the terminal holds raysitter's lines, not Ray's internal notices (C++ core, token setup)
    assert not re.search(r"^\[\d{4}-\d\d-\d\d [\d:,]+ [IWE] \d+ \d+\] \w+\.cc:\d+", text, re.M), text[-3000:]
    assert "authentication_token_setup" not in text and "Exception in thread" not in text, text[-3000:]
    name = re.search(r"raysitter train: (\S+)", text).group(1)
    key = re.search(r"""raysitter train 'resume="(\S+)"'""", text).group(1)  # quoted: the name holds "epochs=40"
    assert key.startswith(name + "-"), text[-2000:]  # the run's storage key: its name and MLflow run id
    resume = f'resume="{name}"'  # the name alone works too while one run has it
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("raysitter").experiment_id])
    assert run.info.status == "KILLED"
    stopped_at = logged_epoch(out / "mlflow.db")
    assert 4 <= stopped_at < epochs

    # mistaken resumes are refused before Ray, the same in this process as from the console script
    monkeypatch.setenv("RAYSITTER_OUTPUT_DIR", str(out))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert refusal([resume, "optimizer.lr=0.1"], capsys).count("optimizer.lr=0.1")
    assert key in refusal(["resume=no-such-run"], capsys)  # the known runs are offered

    # from another folder, naming the output folder on the command line instead of RAYSITTER_OUTPUT_DIR
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env.pop("RAYSITTER_OUTPUT_DIR")
    resumed = subprocess.run([str(BIN / "raysitter"), "train", resume, f"output_dir={out}"],  # on the session's Ray:
                             env={**env, **joined_ray}, cwd=elsewhere, capture_output=True, text=True, timeout=600)  # no Ray of its own
    assert not (elsewhere / "outputs").exists()
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    at = int(re.search(r"resumed from \S+ at epoch (\d+) \(restart 1\)", resumed.stdout).group(1))
    assert stopped_at <= at <= stopped_at + 1  # epochs are logged before their checkpoint: only one not yet uploaded is redone
    (again,) = client.search_runs([run.info.experiment_id])
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert again.data.metrics["epoch"] == epochs and again.data.metrics["restarts"] == 1
    assert {m.step for m in client.get_metric_history(run.info.run_id, "val/acc")} == set(range(1, epochs + 1))
    assert again.data.metrics["val/acc"] > 0.95

    assert "finished already" in refusal([resume], capsys)


def refusal(args: list[str], capsys) -> str:
    """`raysitter train ARGS` run in this process: it must exit 2 without a traceback; returns
    what it printed on stderr, on one line."""
    from pipelines import train

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train.main(args, prog="raysitter train")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err, err
    return " ".join(err.split())
