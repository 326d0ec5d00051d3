"""Bad input is refused before Ray starts: one paragraph naming the key, exit code 2, and
nothing written."""
from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

import pytest

from pipelines import train

BAD_INPUT = [
    (["optimizer=nope"], "optimizer/nope"),
    (["optimizer.lr=-1"], "optimizer.lr"),
    (["optimizer.lr=0"], "optimizer.lr"),
    (["trainer.epochs=0"], "trainer.epochs"),
    (["trainer.num_workers=0"], "trainer.num_workers"),
    (["trainer.num_workers=3", "trainer.batch_size=128"], "trainer.batch_size"),
    (["data=cifar10", "data.root=/nonexistent/cifar"], "data.root"),
    (["data=imagefolder"], "data.root"),
    (["tracking.uri=http://127.0.0.1:9"], "tracking.uri"),
    (["model.activation=swishy"], "model/activation/swishy"),
]


@pytest.mark.parametrize("overrides,key", BAD_INPUT, ids=[" ".join(o) for o, _ in BAD_INPUT])
def test_bad_input_exits_2_naming_the_key(overrides, key, output_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(overrides, prog="raysitter train")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert key in err
    assert "Traceback" not in err
    assert not output_dir.exists(), "a refused config must leave nothing behind"


def test_console_script_reports_error_paragraph(tmp_path):
    env = {**os.environ, "RAYSITTER_OUTPUT_DIR": str(tmp_path / "out")}
    env.pop("MLFLOW_TRACKING_URI", None)
    exe = Path(sys.executable).parent / "raysitter"
    proc = subprocess.run([str(exe), "train", "trainer.epochs=0"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "error in `trainer.epochs`" in proc.stderr and "Fix:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_pipeline_exits_2(capsys):
    from pipelines.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["trian"])
    assert exit_info.value.code == 2
    assert "unknown pipeline 'trian'" in capsys.readouterr().err


def test_hydra_flags_still_work(capsys):
    train.main(["--cfg", "job", "optimizer=sgd", "model.activation=tanh"], prog="raysitter train")
    out = capsys.readouterr().out
    assert "torch.optim.SGD" in out and "torch.nn.Tanh" in out
