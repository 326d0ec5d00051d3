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
    (["trainer.placement_strategy=EVERYWHERE"], "trainer.placement_strategy"),
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


ZOO_BAD_INPUT = [
    ("finetune", ["zoo=nosuch@champion"], "`zoo`"),
    ("finetune", ["zoo=bad name"], "`zoo`"),
    ("finetune", ["zoo=x", "finetune.strategy=everything"], "finetune.strategy"),
    ("finetune", ["zoo=x", "finetune.lr_scale=2"], "finetune.lr_scale"),
    ("finetune", [], "zoo"),
    ("ensemble", ["members=[0123456789abcdef0123456789abcdef]"], "members"),
    ("ensemble", ["members=[0123456789abcdef0123456789abcdef,nosuch@x]"], "members"),
    ("ensemble", ["sweep=nosuch"], "sweep"),
    ("train", ["ensembling=snapshots"], "ensembling"),
    ("train", ["ensembling=ema", "ensembling.decay=1.5"], "ensembling"),
]


@pytest.mark.parametrize("pipeline,overrides,key", ZOO_BAD_INPUT, ids=[f"{p} {' '.join(o)}" for p, o, _ in ZOO_BAD_INPUT])
def test_zoo_pipelines_refuse_bad_input_naming_the_key(pipeline, overrides, key, output_dir, capsys):
    import importlib

    module = importlib.import_module(f"pipelines.{pipeline}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(overrides, prog=f"raysitter {pipeline}")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err


def test_zoo_command_without_a_store_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    env["RAYSITTER_OUTPUT_DIR"] = str(tmp_path / "empty")
    result = subprocess.run([str(Path(sys.executable).parent / "raysitter"), "zoo", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--output-dir" in result.stderr and "raysitter train" in result.stderr
    assert not (tmp_path / "empty" / "mlflow.db").exists()
