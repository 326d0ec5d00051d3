"""The model zoo against a real `mlflow server` on 127.0.0.1: push → list → pull from a second
"machine" (another folder and process), a tampered artifact refused, and a zoo model fine-tuned
through Ray and made one of an ensemble, each one command."""
from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
import pytest
import torch

from components.ensembling import evaluate_forward
from components.zoo import load_bundle, read_weights
from components.zoo.registry import push
from pipelines.runtime.context import RunContext

pytestmark = pytest.mark.slow
RAYSITTER = str(Path(sys.executable).parent / "raysitter")


def logged_run(compose_train, url: str, overrides: list[str], experiment: str = "raysitter") -> str:
    """Trains in-process (no Ray) into an MLflow run on the server; returns its id."""
    from components.tracking import ensure_experiment
    from pipelines.runtime.worker import LocalSession, run_training

    config = OmegaConf.to_container(compose_train(["diagnostics=off", *overrides]), resolve=True)
    client = MlflowClient(url)
    run = client.create_run(ensure_experiment(client, experiment), run_name="in-process")
    run_training(config, LocalSession(), RunContext(run_id=run.info.run_id, tracking_uri=url, quiet=True))
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def cli(args: list[str], cwd: Path, url: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAYSITTER_OUTPUT_DIR"}
    env["MLFLOW_TRACKING_URI"] = url
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([RAYSITTER, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_push_list_pull_on_a_second_machine(compose_train, mlflow_server, tmp_path):
    url = mlflow_server["url"]
    run_id = logged_run(compose_train, url, ["trainer.epochs=3"])
    machine1, machine2 = tmp_path / "machine1", tmp_path / "machine2"

    pushed = cli(["zoo", "push", run_id, "--name", "digits-mlp", "--alias", "champion"], machine1, url)
    assert pushed.returncode == 0, pushed.stderr
    assert "digits-mlp/1 (alias champion)" in pushed.stdout
    listed = cli(["zoo", "list"], machine1, url)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "digits-mlp" in line)
    for field in ("champion", "digits", "0,1,2,3,4,5,6,7,8,9", "MLP"):
        assert field in row

    pulled = cli(["zoo", "pull", "digits-mlp@champion"], machine2, url)
    assert pulled.returncode == 0, pulled.stderr
    bundle = machine2 / "outputs" / "zoo" / "digits-mlp" / "v1"
    assert str(bundle) in pulled.stdout and "verified" in pulled.stdout
    net, normalizer, info = load_bundle(bundle)
    assert info["source"]["run_id"] == run_id
    from pipelines.runtime import build

    test = build.load_splits(info["data"], info["seed"]).test
    logged = MlflowClient(url).get_run(run_id).data.metrics["best/test/acc"]  # the bundle holds the best epoch's weights
    assert evaluate_forward(lambda x: net(normalizer(x)), test)["acc"] == pytest.approx(logged) == info["metrics"]["test/acc"]

    missing = cli(["zoo", "pull", "nosuch@champion"], machine2, url)
    assert missing.returncode == 2 and "nosuch" in missing.stderr and "Traceback" not in missing.stderr


def test_a_tampered_artifact_is_refused_and_nothing_lands(compose_train, mlflow_server, tmp_path):
    url = mlflow_server["url"]
    run_id = logged_run(compose_train, url, ["trainer.epochs=1"])
    assert cli(["zoo", "push", run_id, "--name", "tampered"], tmp_path, url).returncode == 0
    stored = next(mlflow_server["artifacts"].rglob(f"{run_id}/artifacts/zoo_model/data/bundle/model.safetensors"))  # what the version points at
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    result = cli(["zoo", "pull", "tampered/1", "--dest", "here"], tmp_path, url)
    assert result.returncode == 1
    assert "hash check" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "here").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no half-written folder either


def test_train_register_finetune_and_ensemble_from_the_zoo(compose_train, ray_session, mlflow_server, output_dir, monkeypatch, capsys):
    from pipelines import ensemble, finetune

    url = mlflow_server["url"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    small = ["model=convnet", "model.channels=[8]", "model.hidden=[32]", "diagnostics=off"]
    # trained in-process (`raysitter train tracking.register_as=… tracking.register_alias=…` through
    # Ray, to a server: tests/test_object_storage.py); fine-tuned through Ray from the zoo
    client = MlflowClient(url, registry_uri=url)
    push(client, url, logged_run(compose_train, url, [*small, "data.classes=[0,1,2,3,4]", "trainer.epochs=4"]), "digits04", "champion")
    source = client.get_model_version_by_alias("digits04", "champion")

    finetune.main(["zoo=digits04@champion", "data.classes=[5,6,7,8,9]", "data.train_per_class=10", "trainer.epochs=3",
                   "trainer.batch_size=10", "finetune.strategy=top"], prog="raysitter finetune")
    runs = client.search_runs([client.get_experiment_by_name("raysitter-finetune").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    tags = runs[0].data.tags
    assert tags["zoo.source"] == "digits04/1" and tags["zoo.source_run_id"] == source.run_id and tags["finetune.strategy"] == "top"
    assert runs[0].data.params["preprocess.from_zoo"] == "digits04/1"
    # the convolutional body came from the zoo and stayed frozen, bit for bit
    import mlflow.artifacts

    pre, _ = read_weights(mlflow.artifacts.download_artifacts(run_id=source.run_id, artifact_path="bundle", dst_path=str(output_dir / "a"), tracking_uri=url))
    post, info = read_weights(mlflow.artifacts.download_artifacts(run_id=runs[0].info.run_id, artifact_path="bundle", dst_path=str(output_dir / "b"), tracking_uri=url))
    assert info["classes"] == ["5", "6", "7", "8", "9"]
    body = [k for k in pre if k.startswith("body.")]
    assert body and all(torch.equal(pre[k], post[k]) for k in body)
    assert post["head.weight"].shape == (5, 32)

    # two more models of the same task (other seeds, same split), then the ensemble of three
    others = [logged_run(compose_train, url, [*small, "data.classes=[0,1,2,3,4]", "trainer.epochs=4", f"seed={s}"]) for s in (1, 2)]
    capsys.readouterr()
    ensemble.main([f"members=[digits04@champion,{others[0]},{others[1]}]"], prog="raysitter ensemble")
    out = capsys.readouterr().out
    assert "ensemble (mean softmax)" in out and "gain over the best single model" in out
    runs = client.search_runs([client.get_experiment_by_name("raysitter-ensemble").experiment_id])
    m = runs[0].data.metrics
    assert runs[0].info.status == "FINISHED" and m["ensemble/size"] == 3
    assert m["ensemble/gain_over_mean"] == pytest.approx(m["ensemble/test/acc"] - m["single/mean/test/acc"])
    assert {"ensemble.txt", "config.yaml"} <= {a.path for a in client.list_artifacts(runs[0].info.run_id)}
