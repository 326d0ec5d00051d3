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
