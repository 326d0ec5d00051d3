"""Mistaken command lines are refused before anything starts: exit 2, one paragraph naming the
key and the fix, no traceback, no Ray, no MLflow run, nothing written. A corpus across every
command and config group (in-process, with Ray's and the runs' entry points watched), and a
few through the installed console script."""
from __future__ import annotations

import importlib
import os
from pathlib import Path
import re
import subprocess
import sys

import pytest

RAYSITTER = str(Path(sys.executable).parent / "raysitter")
RUN_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory) -> dict[str, Path]:
    """Image folders that are wrong in the ways a user's own data is: one class, an
    undecodable file, a class folder without images; a text file posing as a store."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("bad-data")
    folders = {"one_class": ["a"], "undecodable": ["a", "b"], "empty_class": ["a", "b"]}
    for name, classes in folders.items():
        for cls in classes:
            (root / name / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / name / "a" / f"{i}.png")
    (root / "undecodable" / "b" / "0.png").write_bytes(b"not an image")
    (root / "empty_class" / "b" / "notes.txt").write_text("no images here")
    (root / "notes.txt").write_text("not a database")
    return {**{name: root / name for name in folders}, "text_file": root / "notes.txt", "folder": root}


# (command, arguments, the key the paragraph must name, the store exists beforehand)
CORPUS = [
    ("train", ["optimizer=nope"], "optimizer", False),
    ("train", ["model.activation=swishy"], "model.activation", False),
    ("train", ["init=nope"], "init", False),
    ("train", ["optimizer.lr=-1"], "optimizer.lr", False),
    ("train", ["optimizer.lr=0"], "optimizer.lr", False),
    ("train", ["optimizer.lr=true"], "optimizer.lr", False),
    ("train", ["optimizer.lr=fast"], "optimizer.lr", False),
    ("train", ["optimizer.lr=["], "command line", False),
    ("train", ["optimizer=sgd", "optimizer.momentum=1.5"], "optimizer.momentum", False),
    ("train", ["optimizer.betas=[0.9]"], "optimizer.betas", False),
    ("train", ["trainer.epochs=0"], "trainer.epochs", False),
    ("train", ["trainer.epochs=2.5"], "trainer.epochs", False),
    ("train", ["trainer.epoch=3"], "trainer.epoch", False),
    ("train", ["trainer.num_workers=0"], "trainer.num_workers", False),
    ("train", ["trainer.num_workers=3", "trainer.batch_size=128"], "trainer.batch_size", False),
    ("train", ["trainer.placement_strategy=EVERYWHERE"], "trainer.placement_strategy", False),
    ("train", ["trainer.precision=fp8"], "trainer.precision", False),
    ("train", ["trainer.max_failures=-5"], "trainer.max_failures", False),
    ("train", ["trainer.checkpoints_to_keep=0"], "trainer.checkpoints_to_keep", False),
    ("train", ["trainer.report_interval_s=0"], "trainer.report_interval_s", False),
    ("train", ["trainer.use_gpu=maybe"], "trainer.use_gpu", False),
    ("train", ["seed=-1"], "seed", False),
    ("train", ["+trainer.epoch=3"], "trainer.epoch", False),
    ("train", ["-m", "trainer.epoch=3,4"], "trainer.epoch", False),  # a multirun: refused before its first job
    ("train", ["-m", "optimizer=sgd,adamm"], "optimizer", False),
    ("train", ["--multirun", "seed=1,2", "model.activation=relu,eluu"], "model.activation", False),
    ("train", ["-m", "hydra/launcher=rai", "seed=1,2"], "hydra.launcher", False),
    ("train", ["-m", "seed=1,"], "command line", False),
    ("tune", ["-m", "search=smoke,lr_only"], "search", False),
    ("tune", ["search.space.optimizer.lr={uniform:[0.01,0.1]}"], "search.space.optimizer.lr", False),
    ("train", ["data=cifar10", "data.root=/nonexistent/cifar"], "data.root", False),
    ("train", ["data=imagefolder"], "data.root", False),
    ("train", ["data=imagefolder", "data.root=~/no/such/folder"], "data.root", False),
    ("train", ["data=imagefolder", "data.root={one_class}"], "data.root", False),
    ("train", ["data=imagefolder", "data.root={undecodable}"], "data.root", False),
    ("train", ["data=imagefolder", "data.root={empty_class}"], "data.root", False),
    ("train", ["data=imagefolder", "data.root={one_class}", "data.channels=2"], "data.channels", False),
    ("train", ["data.val_fraction=0"], "data.val_fraction", False),
    ("train", ["data.val_fraction=0.0001"], "data.val_fraction", False),
    ("train", ["data.val_fraction=0.6", "data.test_fraction=0.5"], "data.val_fraction", False),
    ("train", ["data.classes=[3]"], "data.classes", False),
    ("train", ["data.classes=[1,12]"], "data.classes", False),
    ("train", ["data.train_per_class=0"], "data.train_per_class", False),
    ("train", ["data=synthetic", "data.num_classes=1"], "data.num_classes", False),
    ("train", ["model.dropout=1.5"], "model.dropout", False),
    ("train", ["model.hidden=64"], "model.hidden", False),
    ("train", ["model=convnet", "model.pool=average"], "model.pool", False),
    ("train", ["model.batch_norm=true", "trainer.batch_size=8"], "trainer.batch_size", False),
    ("train", ["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size", False),
    ("train", ["scheduler.interval=batch"], "scheduler.interval", False),
    ("train", ["scheduler=exponential", "scheduler.gamma=-0.5"], "scheduler.gamma", False),
    ("train", ["augment=rotate", "augment.degrees=yes"], "augment.degrees", False),
    ("train", ["augment=flip", "augment.p=2"], "augment.p", False),
    ("train", ["preprocess.mode=whiten"], "preprocess.mode", False),
    ("train", ["ensembling=snapshots"], "ensembling", False),
    ("train", ["ensembling=ema", "ensembling.decay=1.5"], "ensembling.decay", False),
    ("train", ["diagnostics.every_n_steps=0"], "diagnostics.every_n_steps", False),
    ("train", ["tracking.uri=http://127.0.0.1:9"], "tracking.uri", False),
    ("train", ["tracking.uri={folder}"], "tracking.uri", False),
    ("train", ["output_dir={text_file}"], "output_dir", False),
    ("train", ["trainer.storage_path={text_file}/ckpt"], "trainer.storage_path", False),
    ("train", ["trainer.storage_path=s3:/bucket/runs"], "trainer.storage_path", False),
    ("train", ["trainer.storage_endpoint=http://127.0.0.1:9000"], "trainer.storage_endpoint", False),
    ("tune", ["trainer.storage_path=s3://no-such-bucket/x"], "trainer.storage_path", False),  # before any bucket check
    ("tune", ["trainer.storage_endpoint=http://127.0.0.1:9000"], "trainer.storage_endpoint", False),
    ("train", ["tracking.uri=sqlite:///{text_file}"], "tracking.uri", False),
    ("train", ["tracking.experiment="], "tracking.experiment", False),
    ("train", ["tracking.run_name=my/run"], "tracking.run_name", False),
    ("train", ['tracking.register_as="o\'brien"'], "tracking.register_as", False),
    ("train", ["tracking.register_as=digits", "tracking.register_alias=latest"], "tracking.register_alias", False),
    ("train", ["tracking.register_as=digits", "tracking.register_alias=v1"], "tracking.register_alias", False),  # MLflow's: after training
    ("train", ["tracking.register_as=digits", "tracking.register_alias=prod.1"], "tracking.register_alias", False),
    ("train", ["resume=no-such-run"], "resume", False),
    ("train", ["resume=../../etc"], "resume", False),
    ("check", ["check.examples=1"], "check.examples", False),
    ("check", ["check.lr_range.low=1", "check.lr_range.high=0.1"], "check.lr_range.high", False),
    ("check", ["check.overfit_steps=0"], "check.overfit_steps", False),
    ("check", ["check.overfit_examples=600"], "check.overfit_examples", False),
    ("tune", ["search.metric=val/accuracy"], "search.metric", False),
    ("tune", ["search.metric=val/loss"], "search.mode", False),
    # an accuracy minimised: early stopping stopped the run while it improved, the best epoch kept was the worst
    ("train", ["early_stopping=plateau", "early_stopping.metric=val/acc"], "early_stopping.mode", False),
    ("train", ["tracking.best_metric=val/loss"], "tracking.best_mode", False),
    ("train", ["scheduler=step", "scheduler.gamma=2"], "scheduler.gamma", False),
    ("train", ["tracking.register_as=digits", "tracking.log_bundle=false"], "tracking.log_bundle", False),  # trained, then failed  # "decay" that doubles the lr every step_size epochs
    ("train", ["scheduler=cyclic", "scheduler.base_lr=0.1", "scheduler.max_lr=0.01"], "scheduler.max_lr", False),
    ("tune", ["search.mode=maximum"], "search.mode", False),
    ("tune", ["search.method=grid", "search.grid_points=1"], "search.grid_points", False),
    ("tune", ["search.stages=[{samples:0,epochs:1}]"], "search.stages", False),
    ("tune", ["search.max_concurrent=0"], "search.max_concurrent", False),
    ("tune", ["search.scheduler=hyperband"], "search.scheduler", False),
    ("tune", ["search.top_k=20"], "search.top_k", False),
    ("tune", ["search.grace_period=5", "search=smoke", "search.scheduler=asha"], "search.grace_period", False),
    ("tune", ["search.trial_backend=function", "trainer.num_workers=2"], "search.trial_backend", False),
    ("tune", ["+search.space.optimizer.lrr={loguniform:[1e-4,1e-1]}"], "search.space", False),
    ("tune", ["resume=no-such-sweep"], "resume", False),
    ("tune", ["sweep_name=a/b"], "sweep_name", False),
    ("finetune", [], "zoo", False),
    ("finetune", ["zoo=bad name"], "zoo", False),
    ("finetune", ["zoo=x", "finetune.strategy=everything"], "finetune.strategy", False),
    ("finetune", ["zoo=x", "finetune.lr_scale=2"], "finetune.lr_scale", False),
    ("finetune", ["zoo=nosuch@champion"], "tracking.uri", False),
    ("finetune", ["zoo=nosuch@champion"], "zoo", True),
    ("ensemble", [f"members=[{RUN_ID}]"], "members", True),
    ("ensemble", [f"members=[{RUN_ID},nosuch@x]"], "members", True),
    ("ensemble", ["members=[a@b,\"x'y\"]"], "members", True),
    ("ensemble", ["sweep=nosuch"], "sweep", True),
    ("ensemble", ["sweep=x", "top_k=0"], "top_k", True),
    ("ensemble", ["members=[a@b,c@d]"], "tracking.uri", False),
    ("study", ["nosuch"], "study NAME", False),
    ("study", ["random_vs_grid", "budget=0"], "budget", False),
    ("study", ["init", "depth=ten"], "depth", False),
    ("study", ["transfer", "cases.head.lr_scale=5"], "cases.head", False),
    ("zoo", ["pull", "bad name"], "zoo pull", True),
    ("zoo", ["push", RUN_ID, "--name", "o'brien"], "zoo push", True),
    ("zoo", ["push", RUN_ID, "--name", "x", "--alias", "latest"], "zoo push", True),
    ("zoo", ["alias", "x", "1", "Latest"], "zoo alias", True),  # refused before the registry is asked
    ("zoo", ["push", RUN_ID, "--name", "x", "--alias", "V2"], "zoo push", True),  # MLflow refused it after making the version
    ("zoo", ["alias", "x", "1", "a.b"], "zoo alias", True),
    ("zoo", ["list"], "--output-dir", False),
    ("ui", ["--port", "70000"], "--port", True),
    # a database store whose driver is not installed (pg8000 is not a dependency): a traceback from MLflow before
    ("ui", ["--backend-store-uri", "postgresql+pg8000://u:p@127.0.0.1:1/db"], "--backend-store-uri", False),
    ("train", ["tracking.uri=postgresql+pg8000://u:p@127.0.0.1:1/db"], "tracking.uri", False),
    ("submit", ["--address", "http://127.0.0.1:1", "--", "train", "optimizer.lr=true"], "optimizer.lr", False),
    ("submit", ["--address", "http://127.0.0.1:1", "--", "tune", "search=smoke", "search.top_k=9"], "search.top_k", False),
    ("submit", ["--address", "http://127.0.0.1:1", "--", "study", "nosuch"], "study NAME", False),
]


def materialise(args: list[str], bad_data: dict[str, Path]) -> list[str]:
    for name, path in bad_data.items():
        args = [a.replace(f"{{{name}}}", str(path)) for a in args]
    return args


@pytest.fixture
def watched(monkeypatch):
    """Records any start of Ray or of an MLflow run (either would be a failure here)."""
    import ray

    from pipelines.runtime import ray_runner, tracking

    started: list[str] = []
    monkeypatch.setattr(ray, "init", lambda *a, **k: started.append("ray.init"))
    monkeypatch.setattr(ray_runner, "init_ray", lambda *a, **k: started.append("init_ray"))
    monkeypatch.setattr(tracking.RunTracker, "__init__", lambda *a, **k: started.append("MLflow run"))
    return started


@pytest.mark.parametrize("command,args,key,store", CORPUS, ids=[f"{c} {' '.join(a)}" for c, a, _, _ in CORPUS])
def test_a_mistaken_command_is_refused_before_anything_starts(command, args, key, store, bad_data, output_dir, watched, capsys):
    if store:  # an empty embedded store, for the commands that read one
        from mlflow.tracking import MlflowClient

        output_dir.mkdir(parents=True)
        MlflowClient(f"sqlite:///{output_dir / 'mlflow.db'}").search_experiments()
    args = materialise(args, bad_data)
    argv = args if command not in ("zoo", "ui") else ["--output-dir", str(output_dir), *args] if command == "zoo" else [*args, "--output-dir", str(output_dir)]
    module = importlib.import_module(f"pipelines.{command}")
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(module.main(argv, prog=f"raysitter {command}"))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err
    paragraph = " ".join(err.split())
    assert f"raysitter: error in `{key}`" in paragraph and " Fix: " in paragraph, err
    assert err.strip().count("\n\n") == 0  # one paragraph
    assert watched == []
    left = sorted(p.name for p in output_dir.iterdir()) if output_dir.exists() else []
    assert left == (["mlflow.db"] if store else []), "a refused command must leave nothing behind"


def test_credentials_in_a_tracking_uri_are_never_printed(output_dir, watched, capsys):
    from pipelines import train

    with pytest.raises(SystemExit) as exit_info:
        train.main(["tracking.uri=http://alice:s3cret@127.0.0.1:9"], prog="raysitter train")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "tracking.uri" in err and "s3cret" not in err and "***@127.0.0.1:9" in err
    from components.tracking import redact

    assert redact("sqlite:////abs/mlflow.db") == "sqlite:////abs/mlflow.db" and redact("http://h:5000") == "http://h:5000"
    assert redact("postgresql://u:pw@db/mlflow?sslmode=require") == "postgresql://***@db/mlflow?***"


def test_a_misspelt_key_is_named_with_the_keys_spelled_like_it(output_dir, watched, capsys):
    """A typo in a key's path (not in a value that adds a key) is called a typo, with the
    config's keys spelled most like it."""
    from pipelines import train

    for wrong, meant in (("optimzer.lr", "optimizer.lr"), ("trainer.epoch", "trainer.epochs")):
        with pytest.raises(SystemExit) as exit_info:
            train.main([f"{wrong}=3"], prog="raysitter train")
        err = " ".join(capsys.readouterr().err.split())
        assert exit_info.value.code == 2 and f"error in `{wrong}`: is not a key of this config (a typo?); did you mean {meant}?" in err, err
        assert f"+{wrong}" not in err  # not told to add the misspelt key
    assert watched == []


def test_a_multirun_is_checked_as_each_of_its_jobs_would_be(output_dir, watched, capsys):
    """Every option of a swept group and the first value of each sweep are composed before any
    job starts; values themselves stay each job's own check (a multirun whose every job is
    refused exits 2, as one refused command does)."""
    from pipelines import train
    from pipelines.runtime.app import check_multirun

    for args, said in ((["trainer.epoch=3,4"], "did you mean trainer.epochs?"),
                       (["optimizer=sgd,adam", "optimizer.momentm=0.9"], "did you mean optimizer.momentum?"),
                       (["hydra/launcher=rai"], "use one of basic, ray."),
                       (["seed=1,2", "hydra.launcher.max_concurrent=2"], "Fix: add hydra/launcher=ray"),  # the basic launcher has none
                       # a sweep that would run no job, or that Hydra's basic sweeper stops at in a traceback
                       (["optimizer.lr=tag(log,interval(1e-4,1e-1))"], "error in `optimizer.lr`: is tag(log,interval(1e-4,1e-1)), a range"),
                       (["seed=range(5,5)"], "error in `seed`: is range(5,5), which holds no value"),
                       (["seed=glob(*)"], "glob() picks options of a config group"),
                       (["optimizer=glob(nosuch*)"], "glob(nosuch*) matches no option of optimizer (adagrad, adam,")):
        with pytest.raises(SystemExit) as exit_info:
            train.main(["-m", *args], prog="raysitter train")
        err = " ".join(capsys.readouterr().err.split())
        assert exit_info.value.code == 2 and said in err, err
    assert watched == []
    for launcher in ("basic", "ray"):  # a mistaken value given once, beside the swept key: every job refused, exit 2
        with pytest.raises(SystemExit) as exit_info:
            train.main(["-m", "seed=1,2", "optimizer.lr=-1", f"hydra/launcher={launcher}"], prog="raysitter train")
        err = " ".join(capsys.readouterr().err.split())
        assert exit_info.value.code == 2 and err.count("error in `optimizer.lr`") == 2, err
        assert "every job of the multirun (2) was refused; nothing ran." in err
        assert not list((output_dir / "multirun").glob("*")) and not (output_dir / "mlflow.db").exists()  # no sweep folder, no store
    # a Ray given by an address where none answers: Ray's own client would retry it for ever
    with pytest.raises(SystemExit) as exit_info:
        train.main(["-m", "seed=1,2", "trainer.address=127.0.0.1:1"], prog="raysitter train")  # the ray launcher, by default
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2 and "error in `trainer.address`: is 127.0.0.1:1, but no Ray answers there" in err, err
    assert not list((output_dir / "multirun").glob("*"))
    assert watched == []
    for valid in (["model=mlp,convnet", "model/activation=relu,maxout", "seed=range(1,3)"], ["optimizer=glob(*,exclude=lbfgs)"],
                  ["optimizer=sgd,adam", "optimizer.lr=0.1,-1"],
                  ["+tags.x=a,b", "hydra/launcher=basic,ray", "data.classes=[0,1],[2,3]"]):
        check_multirun("train", valid)


CONSOLE = [
    (["train", "trainer.epochs=0"], "trainer.epochs"),
    (["tune", "search.mode=maximum"], "search.mode"),
    (["finetune", "zoo=x", "finetune.strategy=all"], "finetune.strategy"),
    (["train", "trainer.address=127.0.0.1:1"], "trainer.address"),  # Ray would retry it for ever
    (["train", "trainer.num_workers=64"], "trainer.num_workers"),  # more than this machine: Ray Train would wait for ever
    (["tune", "search.trial_cpus=64"], "search.trial_cpus"),  # no trial would ever start
]


@pytest.mark.parametrize("args,key", CONSOLE, ids=[" ".join(a) for a, _ in CONSOLE])
def test_the_console_script_refuses_with_one_paragraph(args, key, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "RAY_ADDRESS": "local"}  # a Ray of its own
    env.update(RAYSITTER_OUTPUT_DIR=str(tmp_path / "out"), RAY_TMPDIR=str(tmp_path / "ray"))
    proc = subprocess.run([RAYSITTER, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert re.search(rf"error in `{re.escape(key)}`", proc.stderr) and "Fix:" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output folder, no Ray session folder


def test_a_multirun_whose_workers_never_fit_this_machine_is_refused_before_ray(tmp_path):
    """hydra/launcher=ray on a Ray of the command's own: each job's workers are checked against
    this machine before that Ray starts (inside a job's Ray task the check cannot tell)."""
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "RAY_ADDRESS": "local"}
    env.update(RAYSITTER_OUTPUT_DIR=str(tmp_path / "out"), RAY_TMPDIR=str(tmp_path / "ray"))
    proc = subprocess.run([RAYSITTER, "train", "-m", "seed=1,2", "trainer.num_workers=64", "hydra/launcher=ray"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = " ".join(proc.stderr.split())
    assert err.count("error in `trainer.num_workers`") == 2 and "every job of the multirun (2) was refused; nothing ran." in err
    assert "Traceback" not in err and not (tmp_path / "ray").exists()  # no Ray was started


def test_an_address_where_something_else_answers_is_refused_in_seconds():
    """Ray waits for ever on a host:port where a server that is not Ray answers (a dashboard's
    port, a web server): the command is refused instead, before anything starts."""
    from http.server import HTTPServer, SimpleHTTPRequestHandler
    import threading
    import time

    from pipelines.runtime.errors import UserError
    from pipelines.runtime.validate import check_ray_address

    server = HTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        with pytest.raises(UserError) as refused:
            check_ray_address({"trainer": {"address": f"127.0.0.1:{server.server_address[1]}"}})
        assert refused.value.key == "trainer.address" and "not a Ray head" in str(refused.value)
        assert time.monotonic() - started < 15
    finally:
        server.shutdown()


def test_unknown_pipeline_exits_2(capsys):
    from pipelines.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["trian"])
    assert exit_info.value.code == 2
    assert "unknown pipeline 'trian'" in capsys.readouterr().err


def test_hydra_flags_still_work(capsys):
    from pipelines import train

    train.main(["--cfg", "job", "optimizer=sgd", "model.activation=tanh"], prog="raysitter train")
    out = capsys.readouterr().out
    assert "torch.optim.SGD" in out and "torch.nn.Tanh" in out


def test_a_value_of_the_declared_type_passes(compose_train):
    """The declared types accept what the option files and the README use (a whole number for
    a float, lists, nulls) for every option of every group."""
    from omegaconf import OmegaConf

    from pipelines.runtime import schema
    from pipelines.runtime.app import CONF_DIR, declared_defaults

    groups = ["data", "preprocess", "augment", "init", "model", "optimizer", "scheduler", "diagnostics", "ensembling", "trainer"]
    for group in groups:
        for option in sorted(f.stem for f in (CONF_DIR / group).glob("*.yaml")):
            overrides = [f"{group}={option}", "optimizer.lr=1"] + (["data.root=/tmp"] if option in ("cifar10", "imagefolder") else [])
            config = OmegaConf.to_container(compose_train(overrides), resolve=True)
            choices = {"data": "digits", "preprocess": "per_channel", "augment": "none", "init": "default", "model": "mlp",
                       "model/activation": "relu", "optimizer": "adam", "scheduler": "constant", "diagnostics": "default",
                       "ensembling": "none", "trainer": "default", "tracking": "default", group: option}
            schema.check(config, declared_defaults("train", choices))


def test_zoo_command_without_a_store_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    env["RAYSITTER_OUTPUT_DIR"] = str(tmp_path / "empty")
    result = subprocess.run([RAYSITTER, "zoo", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--output-dir" in result.stderr and "raysitter train" in result.stderr
    assert not (tmp_path / "empty" / "mlflow.db").exists()
