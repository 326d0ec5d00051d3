"""`raysitter study NAME`: the init study and grid vs random search (in-process, real MLflow)."""
from __future__ import annotations

from mlflow.tracking import MlflowClient
import pytest

from pipelines import study


def runs(output_dir, experiment):
    client = MlflowClient(f"sqlite:///{output_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def test_init_study_logs_its_table_and_figure(output_dir, capsys):
    study.main(["init", "depth=4", "width=64", "num_samples=200"])
    out = capsys.readouterr().out
    assert "tanh_small_random" in out and "relu_he" in out
    client, (run,) = runs(output_dir, "raysitter-study")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"init_study.csv", "init_study.png", "init_study.txt", "config.yaml"} <= artifacts
    assert len(client.get_metric_history(run.info.run_id, "relu_he/std")) == 4
    assert (output_dir / "studies" / "init_study.png").exists()


def test_unknown_study_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        study.main(["nope"])
    assert exit_info.value.code == 2 and "init" in capsys.readouterr().err


def test_random_search_tries_more_distinct_learning_rates_than_a_grid(output_dir, capsys):
    study.main(["random_vs_grid", "budget=4", "epochs=1", "repeats=2"])
    out = capsys.readouterr().out
    assert "grid" in out and "random" in out
    client, (run,) = runs(output_dir, "raysitter-study")
    m = run.data.metrics
    assert m["grid/distinct_optimizer.lr"] == 2 and m["random/distinct_optimizer.lr"] == 4
    assert 0 < m["grid/best_val_acc"] <= 1 and 0 < m["random/best_val_acc"] <= 1
    assert {"random_vs_grid.png", "random_vs_grid.csv", "random_vs_grid.txt"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_transfer_study_compares_strategies_with_scratch(output_dir, capsys):
    study.main(["transfer", "seeds=[0]", "pretrain.trainer.epochs=2", "target.trainer.epochs=3", "model.channels=[8]", "model.hidden=[16]"])
    out = capsys.readouterr().out
    for case in ("head", "top", "full", "full_same_lr", "scratch"):
        assert f"\n{case} " in out
    client, (run,) = runs(output_dir, "raysitter-study")
    m = run.data.metrics
    assert {"head/test/acc", "top/test/acc", "full/test/acc", "scratch/test/acc", "pretrain/test/acc"} <= set(m)
    assert all(0 <= m[f"{c}/test/acc_mean"] <= 1 for c in ("head", "scratch"))
    assert {"transfer.png", "transfer.txt"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_transfer_study_refuses_an_unknown_strategy(output_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        study.main(["transfer", "cases.head.strategy=everything"])
    assert exit_info.value.code == 2 and "cases.head" in capsys.readouterr().err
