"""The zoo never destroys a user's files and never runs code a bundle names: pull into a folder
that is not empty, a consistent rewrite of bundle and manifest, a bundle naming an ordinary
library function, a version registered without a digest. In-process, on the embedded SQLite
store (no server, no Ray)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
import pytest

from components.zoo import BundleError, load_bundle
from components.zoo.bundle import ALLOWED_TARGETS, targets
from components.zoo.registry import DIGEST_TAG, push
from pipelines.runtime.app import CONF_DIR
from pipelines.runtime.context import RunContext


def test_every_model_and_data_option_is_allow_listed():
    import yaml

    files = [*(CONF_DIR / "model").rglob("*.yaml"), *(CONF_DIR / "data").glob("*.yaml")]
    named = {value for f in files for _, value in targets(yaml.safe_load(f.read_text()))}
    assert named and named <= ALLOWED_TARGETS


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, compose_train_module):
    """An embedded store with one trained run (1 epoch, MLP) pushed as `digits/1`."""
    from components.tracking import default_tracking_uri, ensure_experiment
    from pipelines.runtime.worker import LocalSession, run_training

    out = tmp_path_factory.mktemp("zoo-trust") / "outputs"
    out.mkdir()
    uri = default_tracking_uri(out)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = ensure_experiment(client, "raysitter", (out / "mlartifacts").as_uri())
    run = client.create_run(experiment, run_name="source")
    config = OmegaConf.to_container(compose_train_module(["diagnostics=off", "trainer.epochs=1", "model.hidden=[16]"]), resolve=True)
    run_training(config, LocalSession(), RunContext(run_id=run.info.run_id, tracking_uri=uri, quiet=True))
    client.set_terminated(run.info.run_id, "FINISHED")
    push(client, uri, run.info.run_id, "digits")
    stored = next(out.rglob(f"{run.info.run_id}/artifacts/zoo_model/data/bundle"))  # the bundle the version points at
    return {"out": out, "uri": uri, "client": client, "run_id": run.info.run_id, "stored": stored}


@pytest.fixture(scope="module")
def compose_train_module():
    from hydra import compose, initialize_config_dir

    def _compose(overrides):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="train", overrides=overrides)

    return _compose


def zoo_cli(zoo, args, capsys):
    from pipelines import zoo as zoo_command

    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(zoo_command.main(["--tracking-uri", zoo["uri"], *args]))
    return exit_info.value.code, capsys.readouterr()


def rewrite_consistently(folder: Path, edit) -> None:
    """Edits bundle.json and re-hashes the manifest, as an attacker with write access to the
    artifact store (but not the registry) would."""
    info = json.loads((folder / "bundle.json").read_text())
    edit(info)
    (folder / "bundle.json").write_text(json.dumps(info))
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_pull_never_replaces_a_folder_holding_other_files(zoo, tmp_path, capsys):
    mine = tmp_path / "mydir"
    mine.mkdir()
    (mine / "notes.txt").write_text("my work")
    code, out = zoo_cli(zoo, ["pull", "digits/1", "--dest", str(mine)], capsys)
    assert code == 2 and "not empty" in out.err and "Traceback" not in out.err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "my work"
    assert [p.name for p in tmp_path.iterdir()] == ["mydir"]  # no temporary folder left either

    fresh = tmp_path / "fresh"
    assert zoo_cli(zoo, ["pull", "digits/1", "--dest", str(fresh)], capsys)[0] == 0
    assert zoo_cli(zoo, ["pull", "digits/1", "--dest", str(fresh)], capsys)[0] == 0  # an earlier pull of the same bundle
    (fresh / "extra.txt").write_text("added by the user")
    code, out = zoo_cli(zoo, ["pull", "digits/1", "--dest", str(fresh)], capsys)
    assert code == 2 and (fresh / "extra.txt").exists() and (fresh / "model.safetensors").exists()


def test_a_consistent_rewrite_of_bundle_and_manifest_is_refused(zoo, tmp_path, capsys, monkeypatch):
    import shutil

    backup = tmp_path / "backup"
    shutil.copytree(zoo["stored"], backup)
    try:
        rewrite_consistently(zoo["stored"], lambda info: info.update(classes=list("abcdefghij")))
        code, out = zoo_cli(zoo, ["pull", "digits/1", "--dest", str(tmp_path / "here")], capsys)
        assert code == 1 and "recorded at registration" in out.err and "Traceback" not in out.err
        assert not (tmp_path / "here").exists()

        from pipelines import finetune

        monkeypatch.setenv("MLFLOW_TRACKING_URI", zoo["uri"])
        monkeypatch.setenv("RAYSITTER_OUTPUT_DIR", str(tmp_path / "ft"))
        with pytest.raises(SystemExit) as exit_info:
            finetune.main(["zoo=digits/1"], prog="raysitter finetune")
        assert exit_info.value.code == 1 and "recorded at registration" in capsys.readouterr().err
    finally:
        shutil.rmtree(zoo["stored"])
        shutil.copytree(backup, zoo["stored"])


def test_a_bundle_naming_a_library_function_runs_nothing(zoo, tmp_path, capsys, monkeypatch):
    """Even registered with a matching digest (a compromised registry, or an old tool), a
    bundle whose bundle.json names os.makedirs is refused at every load point: no marker."""
    import shutil

    from components.zoo.bundle import manifest_digest

    marker = tmp_path / "marker"
    evil = tmp_path / "evil"
    shutil.copytree(zoo["stored"], evil)
    rewrite_consistently(evil, lambda info: info["model"].update(
        activation={"_target_": "os.makedirs", "_args_": [str(marker)]}))
    with pytest.raises(BundleError, match="os.makedirs"):
        load_bundle(evil)
    assert not marker.exists()

    # register it by hand, digest and all, as raysitter never would (push checks the targets)
    client = zoo["client"]
    run = client.create_run(client.get_experiment_by_name("raysitter").experiment_id, run_name="evil")
    client.log_artifacts(run.info.run_id, str(evil), "bundle")
    client.create_registered_model("evil")
    client.create_model_version("evil", f"runs:/{run.info.run_id}/bundle", run_id=run.info.run_id,
                                tags={DIGEST_TAG: manifest_digest(evil)})
    client.set_tag(run.info.run_id, DIGEST_TAG, manifest_digest(evil))
    with pytest.raises(BundleError, match="not one of raysitter"):
        push(client, zoo["uri"], run.info.run_id, "evil2")

    code, out = zoo_cli(zoo, ["pull", "evil/1", "--dest", str(tmp_path / "pulled")], capsys)
    assert code == 1 and "os.makedirs" in out.err and not (tmp_path / "pulled").exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", zoo["uri"])
    monkeypatch.setenv("RAYSITTER_OUTPUT_DIR", str(tmp_path / "out"))
    from pipelines import ensemble, finetune

    for main, args in ((finetune.main, ["zoo=evil/1"]), (ensemble.main, [f"members=[evil/1,{run.info.run_id}]"])):
        with pytest.raises(SystemExit) as exit_info:
            main(args, prog="raysitter")
        assert exit_info.value.code == 1 and "os.makedirs" in capsys.readouterr().err
    assert not marker.exists()


def test_a_version_without_a_recorded_digest_is_refused(zoo, tmp_path, capsys):
    client = zoo["client"]
    client.create_registered_model("untracked")
    client.create_model_version("untracked", f"runs:/{zoo['run_id']}/bundle", run_id=zoo["run_id"])
    code, out = zoo_cli(zoo, ["pull", "untracked/1", "--dest", str(tmp_path / "x")], capsys)
    err = " ".join(out.err.split())
    assert code == 2 and "no recorded manifest digest" in err and f"raysitter zoo push {zoo['run_id']} --name untracked" in err
    assert not (tmp_path / "x").exists()


def test_finetune_refuses_model_overrides_the_zoo_model_replaces(zoo, tmp_path, capsys, monkeypatch):
    """The architecture is the zoo model's (`~model +model={…}` from its bundle): a model
    override would silently not apply, so it is refused before any run starts."""
    from pipelines import finetune

    monkeypatch.setenv("MLFLOW_TRACKING_URI", zoo["uri"])
    monkeypatch.setenv("RAYSITTER_OUTPUT_DIR", str(tmp_path / "ft"))
    runs_before = len(zoo["client"].search_runs([r.experiment_id for r in zoo["client"].search_experiments()]))
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(["zoo=digits/1", "model.hidden=[8]", "model.activation=elu"], prog="raysitter finetune")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "error in `model`" in err and "model.hidden=[8]" in err and "Traceback" not in err
    assert len(zoo["client"].search_runs([r.experiment_id for r in zoo["client"].search_experiments()])) == runs_before


def digits_test_split(zoo, folder: Path) -> tuple[Path, list[int], float]:
    """The run's test images as the dataset yields them (before preprocessing), saved for a
    second process; their labels; the run's logged test/acc."""
    import numpy as np

    from pipelines.runtime import build

    run = zoo["client"].get_run(zoo["run_id"])
    info = load_bundle(zoo["stored"])[2]
    test = build.load_splits(info["data"], 0).test.sample()
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", test.as_float().numpy())
    return folder / "images.npy", test.y.tolist(), run.data.metrics["test/acc"]


def test_a_zoo_version_loads_with_mlflow_pyfunc_in_another_process(zoo, tmp_path):
    """`mlflow.pyfunc.load_model("models:/NAME/1")` from a second folder and process: the
    version is an MLflow Model whose python_function loader reads the bundle (nothing
    unpickled) and predicts the test split with the run's logged test accuracy."""
    import subprocess
    import sys

    images, labels, test_acc = digits_test_split(zoo, tmp_path / "elsewhere")
    script = ("import mlflow, numpy as np, json; m = mlflow.pyfunc.load_model('models:/digits/1'); "
              "out = m.predict(np.load('images.npy')); "
              "print(json.dumps({'flavors': sorted(m.metadata.flavors), 'index': out['class_index'].tolist(), 'columns': list(out.columns)}))")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "elsewhere", capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "MLFLOW_TRACKING_URI": zoo["uri"]})
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["flavors"] == ["python_function"] and out["columns"][:2] == ["label", "class_index"]
    assert sum(p == y for p, y in zip(out["index"], labels)) / len(labels) == pytest.approx(test_acc, abs=1e-9)


@pytest.mark.slow
def test_mlflow_models_serve_answers_for_a_zoo_version(zoo, tmp_path):
    """`mlflow models serve -m models:/digits/1 --env-manager local` (the venv's bin on PATH)
    answers /invocations on 127.0.0.1 with the same predictions."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    import numpy as np

    from tests.conftest import free_port

    images, labels, _ = digits_test_split(zoo, tmp_path / "serve")
    x = np.load(images)[:20]
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": zoo["uri"], "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", "models:/digits/1", "--env-manager", "local",
                             "-h", "127.0.0.1", "-p", str(port)], cwd=tmp_path / "serve", env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline, answer = time.time() + 120, None
        request = json.dumps({"inputs": x.tolist()}).encode()
        while answer is None:
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=request,
                                                                   headers={"Content-Type": "application/json"}), timeout=10) as r:
                    answer = json.loads(r.read())
            except OSError:
                time.sleep(1)
        rows = answer["predictions"]
        from components.zoo.pyfunc import ZooModel

        expected = ZooModel(zoo["stored"]).predict(x)
        assert [row["class_index"] for row in rows] == expected["class_index"].tolist()
        assert all(abs(sum(v for k, v in row.items() if k.startswith("p_")) - 1) < 1e-5 for row in rows)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_evaluate_a_zoo_version_and_a_run_as_runs_of_their_own(zoo, tmp_path, capsys, monkeypatch):
    """`raysitter evaluate zoo=digits/1` scores the registered weights on their own test split:
    its run's eval/acc equals the version's test/acc; per-class metrics and the confusion matrix
    are logged, and tags link it to the model. `run=RUN_ID` scores the same bundle. Data of
    other classes is refused before anything is logged."""
    from pipelines import evaluate

    monkeypatch.setenv("MLFLOW_TRACKING_URI", zoo["uri"])
    monkeypatch.setenv("RAYSITTER_OUTPUT_DIR", str(tmp_path))
    client = zoo["client"]
    registered = float(client.get_model_version("digits", "1").tags["test_acc"])
    metrics = evaluate.evaluate_cli(["zoo=digits/1"])
    assert metrics["eval/acc"] == pytest.approx(registered, abs=5e-5) and metrics["eval/images"] == 270
    experiment = client.get_experiment_by_name("raysitter-evaluate")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["eval/acc"] == metrics["eval/acc"] and run.data.tags["evaluate.model_uri"] == "models:/digits/1"
    assert run.data.tags["evaluate.source_run_id"] == zoo["run_id"]
    assert {"eval/class/0/precision", "eval/class/9/f1"} <= set(run.data.metrics)
    assert {"per_class.csv", "confusion_matrix.csv", "confusion_matrix.png"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    assert evaluate.evaluate_cli([f"run={zoo['run_id']}"])["eval/acc"] == metrics["eval/acc"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["zoo=digits/1", "data=digits", "data.classes=[0,1]"], prog="raysitter evaluate")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "error in `data`" in err and "Traceback" not in err
    assert len(client.search_runs([experiment.experiment_id])) == 2


def test_an_ensemble_listing_one_model_twice_is_refused(zoo, tmp_path, capsys, monkeypatch):
    """A run and its zoo version (or one run twice) are one bundle: an ensemble of them is that
    model, reported as a gain of +0.0000; refused, naming both, before any MLflow run."""
    from pipelines import ensemble

    monkeypatch.setenv("MLFLOW_TRACKING_URI", zoo["uri"])
    monkeypatch.setenv("RAYSITTER_OUTPUT_DIR", str(tmp_path / "out"))
    before = len(zoo["client"].search_runs([e.experiment_id for e in zoo["client"].search_experiments()]))
    for members in (f"[{zoo['run_id']},digits/1]", f"[{zoo['run_id']},{zoo['run_id']}]"):
        with pytest.raises(SystemExit) as exit_info:
            ensemble.main([f"members={members}"], prog="raysitter ensemble")
        err = " ".join(capsys.readouterr().err.split())
        assert exit_info.value.code == 2 and f"{zoo['run_id'][:8]} and " in err and "are the same model" in err, err
    assert len(zoo["client"].search_runs([e.experiment_id for e in zoo["client"].search_experiments()])) == before
