"""`raysitter study NAME`: the init study and grid vs random search (in-process, real MLflow)."""
from __future__ import annotations

import shlex

from mlflow.tracking import MlflowClient
import pytest

from pipelines import study


def runs(output_dir, experiment):
    """The study's own run(s), and the client."""
    client = MlflowClient(f"sqlite:///{output_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    return client, [r for r in found if "mlflow.parentRunId" not in r.data.tags]


def arms(client, study_run):
    return client.search_runs([study_run.info.experiment_id], f"tags.mlflow.parentRunId = '{study_run.info.run_id}'",
                              order_by=["attributes.start_time ASC"])


def rerun(command: str, output_dir) -> list[float]:
    """An arm's recorded command, composed and checked the way the CLI does it, trained
    in-process: its per-epoch val/acc."""
    from pipelines.runtime import validate
    from pipelines.runtime.finetuning import adopt_bundle
    from pipelines.runtime.worker import LocalSession, run_training

    _, pipeline, *overrides = shlex.split(command)
    run = validate.prepare_command(pipeline, [*overrides, f"output_dir={output_dir}"],
                                   (lambda draft: adopt_bundle(draft, verbose=False)) if pipeline == "finetune" else None)
    session = LocalSession()
    run_training(run.config, session, run.context)
    return [r["val/acc"] for r in session.reports]


def history(client, run_id: str, key: str = "val/acc") -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


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
    """…and every trial is an arm: a nested run whose config follows its own values (the cyclic
    schedule's base_lr/max_lr its own lr) and whose command reproduces its metrics."""
    study.main(["random_vs_grid", "budget=4", "epochs=2", "repeats=2", "scheduler=cyclic", "model.hidden=[16]"])
    out = capsys.readouterr().out
    assert "grid" in out and "random" in out
    client, (run,) = runs(output_dir, "raysitter-study")
    m = run.data.metrics
    assert m["grid/distinct_optimizer.lr"] == 2 and m["random/distinct_optimizer.lr"] == 4
    assert 0 < m["grid/best_val_acc"] <= 1 and 0 < m["random/best_val_acc"] <= 1
    assert {"random_vs_grid.png", "random_vs_grid.csv", "random_vs_grid.txt"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    children = arms(client, run)
    assert len(children) == 4 + 2 * 4 and all(c.info.status == "FINISHED" for c in children)
    for child in children:
        p = child.data.params
        assert float(p["scheduler.base_lr"]) == float(p["optimizer.lr"]) and float(p["scheduler.max_lr"]) == pytest.approx(10 * float(p["optimizer.lr"]))
        assert p["model.hidden"] == "[16]" and p["trainer.epochs"] == "2"
        assert shlex.split(child.data.tags["command"])[:6] == ["raysitter", "train", "scheduler=cyclic", "model.hidden=[16]", "trainer.epochs=2", "diagnostics=off"]
    lrs = {float(c.data.params["optimizer.lr"]) for c in children}
    assert len(lrs) >= 5  # the arms trained at their own rates
    chosen = children[-1]
    assert rerun(chosen.data.tags["command"], output_dir) == history(client, chosen.info.run_id)


def test_transfer_study_compares_strategies_with_scratch(output_dir, capsys):
    study.main(["transfer", "seeds=[0]", "pretrain.trainer.epochs=2", "target.trainer.epochs=3", "model.channels=[8]", "model.hidden=[16]"])
    out = capsys.readouterr().out
    for case in ("head", "top", "full", "full_same_lr", "scratch"):
        assert f"\n{case} " in out
    assert "epoch " not in out  # the arms train quietly: the table says what matters
    client, (run,) = runs(output_dir, "raysitter-study")
    m = run.data.metrics
    assert {"head/test/acc", "top/test/acc", "full/test/acc", "scratch/test/acc", "pretrain/test/acc"} <= set(m)
    assert all(0 <= m[f"{c}/test/acc_mean"] <= 1 for c in ("head", "scratch"))
    assert {"transfer.png", "transfer.txt"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    children = {c.data.tags["study.arm"]: c for c in arms(client, run)}
    assert set(children) == {"pretrain", "head-seed0", "top-seed0", "full-seed0", "full_same_lr-seed0", "scratch-seed0"}
    assert shlex.split(children["pretrain"].data.tags["command"])[:5] == ["raysitter", "train", "model=convnet", "model.channels=[8]", "model.hidden=[16]"]
    head = children["head-seed0"]
    assert head.data.tags["command"].startswith("raysitter finetune zoo=transfer-study-source/1 ")
    assert head.data.params["finetune.strategy"] == "head" and head.data.tags["zoo.source"] == "transfer-study-source/1"
    assert head.data.params["data.classes"] == "[5, 6, 7, 8, 9]" and head.data.params["trainer.epochs"] == "3"
    assert children["scratch-seed0"].data.tags["command"].startswith("raysitter train model=convnet")
    assert rerun(head.data.tags["command"], output_dir) == history(client, head.info.run_id)


def test_transfer_study_refuses_an_unknown_strategy(output_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        study.main(["transfer", "cases.head.strategy=everything"])
    assert exit_info.value.code == 2 and "cases.head" in capsys.readouterr().err
