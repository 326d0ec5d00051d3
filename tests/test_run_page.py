"""What a run shows in MLflow: artifacts written by the per-worker loop (in-process, real store)."""
from __future__ import annotations

from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from pipelines.worker import LocalSession, run_training


def test_run_artifacts_answer_how_it_went(compose_train, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("x", artifact_location=(tmp_path / "art").as_uri())).info.run_id
    config = OmegaConf.to_container(compose_train(["trainer.epochs=2", "augment=random_combo"]), resolve=True)
    config["_run"] = {"run_id": run_id, "tracking_uri": uri, "quiet": True}
    run_training(config, LocalSession())
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


def test_server_refuses_a_public_address_without_allowed_hosts(tmp_path, capsys):
    from pipelines import ui

    assert ui.server_main(["--host", "0.0.0.0", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--allowed-hosts" in err and "`--host`" in err
    assert not (tmp_path / "mlflow.db").exists()


def test_ui_without_a_store_says_how_to_make_one(tmp_path, capsys):
    from pipelines import ui

    assert ui.main(["--output-dir", str(tmp_path / "none")]) == 2
    assert "raysitter train" in capsys.readouterr().err


def test_run_description_says_what_how_it_went_and_how_to_reproduce():
    from pipelines.train import describe

    config = {"trainer": {"epochs": 3, "num_workers": 2, "batch_size": 64}, "optimizer": {"lr": 0.01}, "model": {"_target_": "x.MLP"}}
    choices = {"model": "mlp", "model/activation": "elu", "optimizer": "sgd", "scheduler": "step", "data": "digits"}
    tags = {"pipeline": "train", "command": "raysitter train optimizer=sgd optimizer.lr=0.01"}
    text = describe(config, choices, tags, {"epoch": 3, "val/acc": 0.9, "test/acc": 0.88, "train/acc": 0.95, "gap/train_val_acc": 0.05,
                                             "ema/test/acc": 0.89}, 12.0)
    assert "mlp (elu)" in text and "sgd lr 0.01" in text and "2 worker(s)" in text
    assert "val/acc **0.9000**" in text and "gap +0.0500" in text and "ema test/acc 0.8900" in text
    assert "    raysitter train optimizer=sgd optimizer.lr=0.01" in text  # a markdown code block
    diverged = describe(config, choices, tags, {"epoch": 2, "diverged": 1.0, "train/loss": float("nan")}, 3.0)
    assert "**diverged** at epoch 2" in diverged
