"""`raysitter tune` and Hydra multirun end to end on a real local Ray with a real MLflow store."""
from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import sqlite3
import subprocess
import sys
import time

from mlflow.tracking import MlflowClient
import pytest

from pipelines import train, tune

pytestmark = pytest.mark.slow


def client_for(output_dir: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{output_dir / 'mlflow.db'}")


def trial_runs(client: MlflowClient, parent_run_id: str):
    exp = client.get_experiment_by_name("raysitter-tune")
    return client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'")


def test_two_stage_sweep_nests_narrows_registers_its_best_and_makes_an_ensemble(ray_session, output_dir, capfd):
    # a trial per stage (the narrowing itself is tests/test_search.py's; Ray Train inside each
    # trial, what auto picks for multi-worker trials, is tests/test_cluster.py's sweep)
    stages = "search.stages=[{samples:1,epochs:1},{samples:1,epochs:1}]"
    tune.main(["search=smoke", stages, "search.top_k=1", "sweep_name=smoke", "tracking.register_as=smoke-best"], prog="raysitter tune")
    out, err = capfd.readouterr()
    assert "max_concurrent_trials" not in out + err  # Tune's search-algorithm warning: the generator bounds concurrency
    assert "stage 1 → 2" in out and "retrain the best:  raysitter train optimizer.lr=" in out
    assert "trial backend: function (search.trial_backend)" in out and "trials 1/1 done, best val/acc" in out  # a line per trial
    assert "the best trial, exactly: raysitter train optimizer.lr=" in " ".join(out.split())  # its full-precision values
    client = client_for(output_dir)
    exp = client.get_experiment_by_name("raysitter-tune")
    (parent,) = client.search_runs([exp.experiment_id], "tags.pipeline = 'tune'")
    assert parent.info.status == "FINISHED" and "best/val/acc" in parent.data.metrics
    trials = trial_runs(client, parent.info.run_id)
    assert sorted(t.data.tags["stage"] for t in trials) == ["1", "2"]
    assert all(t.info.status == "FINISHED" for t in trials)
    assert all("val/acc" in t.data.metrics and "search.optimizer.lr" in t.data.params for t in trials)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "narrowing.txt", "val_acc_vs_optimizer.lr.png", "lr_vs_weight_decay.png"} <= artifacts
    state = json.loads((output_dir / "sweeps" / "smoke" / "state.json").read_text())
    lr2 = state["stages"][0]["next_space"]["optimizer.lr"]["args"]
    assert 1e-5 <= lr2[0] < lr2[1] <= 1e-1  # inside the original range (tests/test_search.py checks the narrowing)

    # every finished trial logged its bundle; the best one went to the zoo (tracking.register_as)
    assert all(any(a.path == "bundle" for a in client.list_artifacts(t.info.run_id)) for t in trials)
    best = max(trials, key=lambda t: t.data.metrics["val/acc"])
    (version,) = client.search_model_versions("name = 'smoke-best'")
    assert version.run_id == best.info.run_id and "zoo          smoke-best/1" in out

    # and the sweep's top two make an ensemble
    from pipelines import ensemble

    ensemble.main(["sweep=smoke", "top_k=2"], prog="raysitter ensemble")
    (run,) = client.search_runs([client.get_experiment_by_name("raysitter-ensemble").experiment_id])
    assert run.data.metrics["ensemble/size"] == 2 and best.info.run_id[:8] in run.data.tags["ensemble.members"]


def test_multirun_groups_its_runs_goes_on_past_a_failing_job_and_prints_a_summary(ray_session, output_dir, capsys):
    """Jobs with optimizer.lr=-1 are refused (before Ray); the others still train; the summary
    lists every job and the command exits 1."""
    with pytest.raises(SystemExit) as exit_info:
        train.main(["-m", "optimizer=sgd,adam", "optimizer.lr=-1,0.01", "trainer.epochs=1", "tracking.log_model=false", "diagnostics=off"],
                   prog="raysitter train")
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    out = " ".join(captured.out.split())
    assert "multirun" in out and "2 runs, 2 failed job(s)" in out and "refused" in out
    err = " ".join(captured.err.split())
    assert "multirun job 0 (optimizer=sgd optimizer.lr=-1 " in err and "refused (see the error above); going on with the others" in err
    client = client_for(output_dir)
    runs = client.search_runs([client.get_experiment_by_name("raysitter").experiment_id])
    assert len(runs) == 2 and len({r.data.tags["raysitter.multirun"] for r in runs}) == 1
    assert sorted(r.data.tags["raysitter.multirun.job"] for r in runs) == ["1", "3"]
    assert {r.data.params["optimizer._target_"] for r in runs} == {"torch.optim.SGD", "torch.optim.Adam"}
    assert {r.info.status for r in runs} == {"FINISHED"}


def finished_trials(db: Path) -> int:
    """Read straight from the store, read-only: the driver may still be creating its tables, and
    a plain connect would create the file under it."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as con:
            return con.execute(
                "select count(*) from runs where status = 'FINISHED' and run_uuid in "
                "(select run_uuid from tags where key = 'pipeline' and value = 'tune-trial')"
            ).fetchone()[0]
    except sqlite3.Error:
        return 0


def running_runs(db: Path) -> int:
    """Read as MLflow reads, with a connection that may write: a process of the stopped Ray
    killed in the middle of a write leaves a journal that SQLite rolls back on the next open,
    which a read-only connection cannot do ("attempt to write a readonly database", seen in CI)."""
    with sqlite3.connect(db) as con:
        return con.execute("select count(*) from runs where status = 'RUNNING'").fetchone()[0]


def test_ctrl_c_leaves_no_run_running_and_the_sweep_resumes_every_trial_exactly_once(tmp_path, joined_ray):
    out = tmp_path / "outputs"
    env = {**os.environ, "RAYSITTER_OUTPUT_DIR": str(out), "PYTHONUNBUFFERED": "1"}
    env["RAY_ADDRESS"] = "local"  # a Ray of its own, whatever runs on this machine
    env.pop("MLFLOW_TRACKING_URI", None)
    exe = str(Path(sys.executable).parent / "raysitter")
    # two stages as search=smoke has, with fewer trials: 2 side by side, then 1
    args = [exe, "tune", "search=smoke", "search.stages=[{samples:2,epochs:1},{samples:1,epochs:1}]", "sweep_name=killme", "preflight=false"]
    log = open(tmp_path / "first_driver.log", "w")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:  # Ctrl-C once a trial has finished and others run
            time.sleep(1)
            if finished_trials(out / "mlflow.db") >= 1:
                break
            if proc.poll() is not None:
                pytest.fail(f"the sweep exited early:\n{(tmp_path / 'first_driver.log').read_text()[-3000:]}")
        else:
            pytest.fail(f"no trial finished in time:\n{(tmp_path / 'first_driver.log').read_text()[-3000:]}")
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends its foreground process group on Ctrl-C
        assert proc.wait(timeout=120) == 130, (tmp_path / "first_driver.log").read_text()[-3000:]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of the local Ray is left
        except ProcessLookupError:
            pass
        proc.wait()
    assert finished_trials(out / "mlflow.db") < 3, "the sweep must be interrupted mid-way"
    assert running_runs(out / "mlflow.db") == 0, "an interrupted sweep leaves no MLflow run RUNNING"
    client = client_for(out)
    resumed = subprocess.run([exe, "tune", "resume=killme"], env={**env, **joined_ray}, capture_output=True, text=True, timeout=600)  # another Ray
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming sweep killme" in resumed.stdout
    exp = client.get_experiment_by_name("raysitter-tune")
    (parent,) = client.search_runs([exp.experiment_id], "tags.pipeline = 'tune'")
    assert parent.info.status == "FINISHED"
    trials = trial_runs(client, parent.info.run_id)
    finished = [t.data.tags["raysitter.trial"] for t in trials if t.info.status == "FINISHED"]
    assert len(finished) == 3 and len(set(finished)) == 3  # 2 + 1 trials, each completed once
    assert not [t for t in trials if t.info.status == "RUNNING"]
    unlabelled = [(t.data.tags.get("raysitter.trial"), t.data.tags.get("raysitter.outcome"), t.data.metrics.get("epoch"), t.info.end_time)
                  for t in trials if t.info.status == "KILLED" and t.data.tags.get("raysitter.outcome") != "interrupted"]
    assert not unlabelled, (unlabelled, resumed.stdout[-2000:], (tmp_path / "first_driver.log").read_text()[-3000:])


def test_asha_outcomes_match_the_epochs_each_trial_ran_one_at_a_time(ray_session, output_dir):
    # search.trial_cpus: a function trial takes trial_cpus + worker_cpus; this leaves room for one
    cpus = float(ray_session.cluster_resources()["CPU"])
    tune.main(["search=smoke", "search.scheduler=asha", "search.stages=[{samples:4,epochs:3}]", "preflight=false", "sweep_name=asha",
               f"search.trial_cpus={cpus - 0.5}"], prog="raysitter tune")
    client = client_for(output_dir)
    exp = client.get_experiment_by_name("raysitter-tune")
    (parent,) = client.search_runs([exp.experiment_id], "tags.sweep = 'asha' and tags.pipeline = 'tune'")
    trials = trial_runs(client, parent.info.run_id)
    assert len(trials) == 4
    for t in trials:
        has_bundle = any(a.path == "bundle" for a in client.list_artifacts(t.info.run_id))
        if t.data.metrics["epoch"] >= 3:
            assert t.info.status == "FINISHED" and t.data.tags.get("raysitter.outcome", "completed") == "completed"
            assert has_bundle  # logged before the last report, in which Tune ends the trial
        else:
            assert t.info.status == "KILLED" and t.data.tags["raysitter.outcome"] == "early_stopped"
            assert not has_bundle
    assert_one_at_a_time(client, trials)


def assert_one_at_a_time(client: MlflowClient, trials) -> None:
    """Each trial's epochs (their MLflow timestamps) end before the next one's begin."""
    spans = sorted((min(m.timestamp for m in h), max(m.timestamp for m in h))
                   for h in (client.get_metric_history(t.info.run_id, "epoch") for t in trials))
    assert all(end < start for (_, end), (start, _) in zip(spans, spans[1:])), spans


def test_each_trial_is_composed_from_its_own_overrides_and_its_command_reproduces_it(ray_session, output_dir):
    """A grid over lr × a choice of scheduler group: interpolations follow each trial's values
    (cyclic's base_lr/max_lr its own lr, cosine's T_max its stage's epochs), every trial logs its
    whole config, and its recorded `raysitter train …` command trains to the same metrics."""
    import shlex

    from pipelines.runtime.validate import compose_run
    from pipelines.runtime.worker import LocalSession, run_training

    space = ["~search.space.optimizer.weight_decay", "search.space.optimizer.lr={loguniform:[1e-3,1e-2]}",
             "+search.space.scheduler={choice:[cyclic,cosine]}"]
    tune.main(["search=smoke", *space, "search.method=grid", "search.grid_points=2", "search.stages=[{samples:1,epochs:2}]",
               "search.scheduler=none", "preflight=false", "sweep_name=compose", "diagnostics=off", "search.max_concurrent=1",
               "search.worker_cpus=0.25"], prog="raysitter tune")
    client = client_for(output_dir)
    (parent,) = client.search_runs([client.get_experiment_by_name("raysitter-tune").experiment_id], "tags.sweep = 'compose' and tags.pipeline = 'tune'")
    trials = trial_runs(client, parent.info.run_id)
    assert sorted(t.data.params["search.scheduler"] for t in trials) == ["cosine", "cosine", "cyclic", "cyclic"]
    for t in trials:
        p, lr = t.data.params, float(t.data.params["optimizer.lr"])
        assert p["trainer.epochs"] == "2" and p["model.hidden"] and p["data._target_"]  # the whole resolved config
        history = [m.value for m in client.get_metric_history(t.info.run_id, "lr")]
        if p["search.scheduler"] == "cyclic":
            assert float(p["scheduler.base_lr"]) == pytest.approx(lr) and float(p["scheduler.max_lr"]) == pytest.approx(10 * lr)
            assert all(lr * 0.999 <= v <= 10 * lr * 1.001 for v in history) and max(history) > 1.5 * lr
        else:
            assert p["scheduler.T_max"] == "2"  # the stage's epochs, not the train default's 20
    assert len({t.data.params["optimizer.lr"] for t in trials}) == 2
    assert {t.data.params["trainer.resources_per_worker.CPU"] for t in trials} == {"0.25"}  # search.worker_cpus
    assert_one_at_a_time(client, trials)  # search.max_concurrent=1

    trial = trials[0]
    command = shlex.split(trial.data.tags["command"])
    assert command[:2] == ["raysitter", "train"]
    config = compose_run("train", command[2:])
    reports = LocalSession()
    run_training(config, reports)
    logged = [m.value for m in sorted(client.get_metric_history(trial.info.run_id, "val/acc"), key=lambda m: m.step)]
    assert [r["val/acc"] for r in reports.reports] == pytest.approx(logged, abs=1e-9)

    # `raysitter evaluate sweep=NAME` scores the sweep's best finished trial (by val/acc): the weights
    # its bundle holds, on its own test split, are the ones whose best/test/acc the trial logged
    from pipelines import evaluate

    best = max(trials, key=lambda t: t.data.metrics["val/acc"])
    scored = evaluate.evaluate_cli(["sweep=compose"])
    (run,) = client.search_runs([client.get_experiment_by_name("raysitter-evaluate").experiment_id])
    assert run.data.tags["evaluate.source_run_id"] == best.info.run_id
    assert scored["eval/acc"] == pytest.approx(best.data.metrics["best/test/acc"], abs=1e-9)
