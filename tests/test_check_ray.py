"""`raysitter check` and divergence from the command line (real Ray, real MLflow)."""
from __future__ import annotations

from mlflow.tracking import MlflowClient
import pytest

from pipelines import check, train


def runs(output_dir, experiment):
    client = MlflowClient(f"sqlite:///{output_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.mark.slow
def test_check_passes_the_default_and_fails_a_broken_model(ray_session, output_dir, capsys):
    check.main(["check.lr_range.points=8"], prog="raysitter check")
    out = capsys.readouterr().out
    assert "initial loss ≈ ln C" in out and "PASS" in out and "FAIL" not in out
    with pytest.raises(SystemExit) as exit_info:
        check.main(["init=zeros", "check.lr_range.points=4"], prog="raysitter check")
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "break the symmetry" in out
    client, (good, broken) = runs(output_dir, "raysitter-check")
    assert good.data.tags["check.passed"] == "true" and good.data.tags["check.initial_loss"] == "PASS"
    assert broken.data.tags["check.passed"] == "false" and broken.data.tags["check.overfit_tiny"] == "FAIL"
    assert good.info.status == "FINISHED" and "check/initial_loss" in good.data.metrics
    assert [a.path for a in client.list_artifacts(good.info.run_id, "plots")] == ["plots/lr_range_test.png"]


@pytest.mark.slow
def test_a_diverging_run_ends_diverged_without_a_traceback(ray_session, output_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["optimizer=sgd", "optimizer.lr=1e3", "trainer.epochs=4", "tracking.log_model=false"], prog="raysitter train")
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "DIVERGED" in captured.out and "diverged at epoch" in captured.err
    assert "Traceback" not in captured.err + captured.out
    _, (run,) = runs(output_dir, "raysitter")
    assert run.info.status == "FAILED" and run.data.tags["raysitter.outcome"] == "diverged"
