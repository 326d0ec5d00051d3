"""A real two-node Ray cluster on 127.0.0.1 (cluster/local/start.sh), jobs submitted to it with
`raysitter submit` and plain `ray job submit`, and `raysitter jobs`."""
from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

from mlflow.tracking import MlflowClient
import pytest

from tests.conftest import free_port, logged_epoch, logged_metric, processes_named, wait_for_epoch

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def local_cluster():
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="rsc-", dir="/tmp"))  # short: Ray's socket paths must stay under 107 bytes
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(RAYSITTER_CLUSTER_DIR=str(folder), RAY_PORT=str(free_port()), DASHBOARD_PORT=str(free_port()), VENV=str(BIN.parent),
               HEAD_CPUS="2")  # room on the head for both workers once the second node is gone
    started = subprocess.run([str(ROOT / "cluster/local/start.sh")], env=env, capture_output=True, text=True, timeout=240)
    assert started.returncode == 0, started.stdout + started.stderr
    dashboard = (folder / "dashboard.address").read_text().strip()
    assert f"dashboard:   {dashboard}" in started.stdout and dashboard.startswith("http://127.0.0.1:")
    yield {"folder": folder, "dashboard": dashboard, "env": env}
    stopped = subprocess.run([str(ROOT / "cluster/local/stop.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert subprocess.run(["pgrep", "-f", f"{folder}/"], capture_output=True).returncode == 1  # nothing of it left
    shutil.rmtree(folder, ignore_errors=True)


def raysitter(args: list[str], env: dict, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "raysitter"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def runs(output: Path, experiment: str = "raysitter") -> tuple[MlflowClient, list]:
    client = MlflowClient(f"sqlite:///{output / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id]) if exp else []


def test_cluster_has_two_nodes_with_their_own_resources(local_cluster):
    import time

    address = (local_cluster["folder"] / "head.address").read_text().strip()
    for _ in range(20):  # the autoscaler's view lags the nodes by a few seconds
        status = subprocess.run([str(BIN / "ray"), "status", "--address", address],
                                env={**local_cluster["env"], "RAY_AUTH_MODE": "token"}, capture_output=True, text=True, timeout=60)
        if "node2" in status.stdout:
            break
        time.sleep(1)
    assert status.returncode == 0, status.stderr
    assert "node2" in status.stdout and "head_node" in status.stdout and "/3.0 CPU" in status.stdout, status.stdout


def cluster_processes(folder: Path, name: str, node: str = "") -> list[int]:
    """PIDs of processes below this cluster's nodes (or one: "head", "node2") whose command line
    contains `name`."""
    roots = subprocess.run(["pgrep", "-f", f"{folder}/{node}"], capture_output=True, text=True).stdout.split()
    return processes_named([int(p) for p in roots], name)


def restarted_on_head(folder: Path, db: Path, timeout: float = 300) -> list[int]:
    """The PIDs of the two training workers on the head once the run has logged its first
    restart (the workers log it after loading the checkpoint)."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        workers = cluster_processes(folder, "RayTrainWorker", "head/")
        if logged_metric(db, "restarts") >= 1 and len(workers) == 2:
            return workers
        time.sleep(0.5)
    raise AssertionError(f"no restart on the head within {timeout} s (workers there: {workers})")


def assert_resumed_and_finished(local_cluster, env, tmp_path, out, job: str, failures: list[int], epochs: int) -> None:
    """The job's log says it resumed once per failure (at most the epoch in progress lost each
    time) and trained to the end; its one MLflow run holds every epoch and the restarts."""
    import re

    logs = raysitter(["jobs", "--address", local_cluster["dashboard"], "logs", job, "--follow"], env, tmp_path)
    for restart, at_failure in enumerate(failures, start=1):
        resumed = re.search(rf"resumed from \S+ at epoch (\d+) \(restart {restart}\)", logs.stdout)
        assert resumed, logs.stdout[-3000:]
        assert int(resumed.group(1)) >= at_failure  # at most the epoch in progress was lost
    assert f"epoch  {epochs}/{epochs}" in logs.stdout and "epoch   1/" in logs.stdout
    client, (run,) = runs(out)
    assert run.info.status == "FINISHED" and run.data.tags["raysitter.restarts"] == str(len(failures))
    assert run.data.metrics["restarts"] == len(failures) and run.data.metrics["epoch"] == epochs
    steps = {m.step for m in client.get_metric_history(run.info.run_id, "val/acc")}
    assert steps == set(range(1, epochs + 1))  # every epoch is in the history
    assert run.data.metrics["val/acc"] > 0.95  # an uninterrupted run of this length: ≈ 0.97


def test_plain_ray_job_submit_runs_a_multiruns_jobs_concurrently_on_the_cluster(local_cluster, tmp_path):
    """The documented plain form, `ray job submit --working-dir . -- python -m pipelines.cli train …`;
    inside a submitted job RAY_ADDRESS is set, so `-m` takes the ray launcher by itself."""
    out = tmp_path / "outputs"
    env = {**local_cluster["env"], "RAYSITTER_OUTPUT_DIR": str(out)}
    plain = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", local_cluster["dashboard"], "--working-dir", str(ROOT),
         "--runtime-env-json", '{"excludes": [".venv", "outputs", ".git", "*.db"], "env_vars": {"RAYSITTER_OUTPUT_DIR": "%s"}}' % out,
         "--", "python", "-m", "pipelines.cli", "train", "-m", "seed=1,2", "trainer.epochs=2", "diagnostics=off"],
        env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert plain.returncode == 0, plain.stdout[-3000:] + plain.stderr[-3000:]
    assert "2 job(s) on Ray (hydra/launcher=ray)" in plain.stdout and "2 runs" in plain.stdout, plain.stdout[-4000:] + plain.stderr[-2000:]
    _, found = runs(out)
    assert sorted((r.data.params["seed"], r.info.status) for r in found) == [("1", "FINISHED"), ("2", "FINISHED")]
    (a_start, a_end), (b_start, b_end) = [(r.info.start_time, r.info.end_time) for r in found]
    assert max(a_start, b_start) < min(a_end, b_end)  # at the same time


def test_a_mistaken_job_is_refused_and_a_failing_one_exits_1(local_cluster, tmp_path):
    """(`raysitter submit` of a job that succeeds: the two-worker test below.)"""
    out = tmp_path / "outputs"
    env = {**local_cluster["env"], "RAYSITTER_OUTPUT_DIR": str(out)}
    refused = raysitter(["submit", "--address", local_cluster["dashboard"], "--", "train", "optimizer.lr=-1"], env, tmp_path)
    assert refused.returncode == 2 and "optimizer.lr" in refused.stderr and "submitted" not in refused.stdout  # refused here
    # what only the cluster can see (its data) fails there: the job ends FAILED and submit exits 1
    bad = raysitter(["submit", "--address", local_cluster["dashboard"], "--", "train", "data=cifar10", "data.root=/nonexistent/cifar"], env, tmp_path)
    assert bad.returncode == 1 and "FAILED" in bad.stderr and "data.root" in bad.stdout


def test_submit_without_a_cluster_says_how_to_start_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["RAYSITTER_CLUSTER_DIR"] = str(tmp_path / "none")
    result = raysitter(["submit", "--address", f"http://127.0.0.1:{free_port()}", "--", "train"], env, tmp_path, timeout=120)
    assert result.returncode == 2 and "cluster/local/start.sh" in result.stderr and "Traceback" not in result.stderr
    nothing = raysitter(["submit", "--", "frobnicate"], env, tmp_path, timeout=120)
    assert nothing.returncode == 2 and "pipeline" in nothing.stderr


def test_a_refusal_is_read_as_authentication_only_from_the_message_not_the_address():
    from ray._private.authentication.http_token_authentication import format_authentication_http_error

    from pipelines.runtime.cluster import refused_for_auth

    address = "http://auth-head.internal:40383"  # a port holding "403" and a host holding "auth" (CI once read both as auth)
    assert not refused_for_auth(f"Failed to connect to Ray at address: {address}.", address)
    assert not refused_for_auth("Failed to connect to Ray at address: auth-head.internal:40383.", address)
    for status in (401, 403):
        assert refused_for_auth(format_authentication_http_error(status, "denied").splitlines()[0], address)
    assert refused_for_auth("Request failed with status code 403: Forbidden", address)


def test_a_two_worker_job_spreads_survives_a_lost_node_and_a_killed_worker_and_lands_in_mlflow(local_cluster, tmp_path):
    """One submitted run for three behaviours: SPREAD puts a worker on each node; losing the
    second node restarts both workers on the head; a worker killed after that restarts again;
    the run finishes in MLflow with the job's id and the submitting checkout's commit, and
    `raysitter submit`, following the job's log all along, exits 0."""
    import signal

    out = tmp_path / "outputs"
    env = {**local_cluster["env"], "RAYSITTER_OUTPUT_DIR": str(out)}
    epochs, db = 30, out / "mlflow.db"
    log = (tmp_path / "submit.log").open("w")
    submitter = subprocess.Popen([str(BIN / "raysitter"), "submit", "--address", local_cluster["dashboard"], "--submission-id", "survivor",
                                  "--", "train", "trainer.num_workers=2", "trainer.placement_strategy=SPREAD", "trainer.batch_size=64",
                                  f"trainer.epochs={epochs}", "trainer.max_failures=2", "diagnostics=off"],
                                 env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    at_loss = wait_for_epoch(db, 3, submitter)
    assert 3 <= at_loss < epochs
    assert len(cluster_processes(local_cluster["folder"], "RayTrainWorker", "node2/")) == 1  # SPREAD: one worker there
    assert cluster_processes(local_cluster["folder"], "PreemptionWatcher")  # on for a cluster's job (off for a Ray of this machine)
    try:
        stopped = subprocess.run([str(ROOT / "cluster/local/stop.sh"), "node2"], env=env, capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0 and "the head keeps running" in stopped.stdout, stopped.stderr
        assert not subprocess.run(["pgrep", "-f", f"{local_cluster['folder']}/node2/"], capture_output=True).stdout

        victims = restarted_on_head(local_cluster["folder"], db)  # both workers on the head, resumed from the checkpoint
        # one epoch more: its checkpoint holds the first restart (killed before it, the group would
        # resume from the checkpoint of before the restart, and count one restart again)
        at_kill = wait_for_epoch(db, logged_epoch(db) + 1)
        assert at_loss < at_kill < epochs
        os.kill(victims[-1], signal.SIGKILL)
        assert_resumed_and_finished(local_cluster, env, tmp_path, out, "survivor", [at_loss, at_kill], epochs)
        assert submitter.wait(timeout=120) == 0, (tmp_path / "submit.log").read_text()[-3000:]
        assert "job survivor: SUCCEEDED" in (tmp_path / "submit.log").read_text()
    finally:
        if submitter.poll() is None:
            submitter.kill()
        rejoined = subprocess.run([str(ROOT / "cluster/local/start.sh"), "node2"], env=env, capture_output=True, text=True, timeout=120)
    assert rejoined.returncode == 0 and "joined" in rejoined.stdout, rejoined.stderr

    _, (run,) = runs(out)
    assert run.data.params["trainer.num_workers"] == "2" and run.data.tags["ray.job_submission_id"] == "survivor"
    # the job's working_dir has no .git: its commit is the one taken where it was submitted
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert run.data.tags["mlflow.source.git.commit"] == commit and run.data.tags["mlflow.source.type"] == "JOB"
    listed = raysitter(["jobs", "--address", local_cluster["dashboard"], "list"], env, tmp_path, timeout=120)
    assert "survivor" in listed.stdout and "SUCCEEDED" in listed.stdout


def test_tune_joins_the_cluster_given_ray_address_and_runs_two_worker_trials_with_ray_train(local_cluster, tmp_path):
    """Not submitted: a driver on this machine joins the cluster (RAY_ADDRESS) and its trials run
    there; the sweep's storage (OUTPUT_DIR/ray_results) is a folder every node can read. Two
    workers per trial: `search.trial_backend=auto` runs a Ray Train worker group in the trial."""
    import json

    out = tmp_path / "outputs"
    head = (local_cluster["folder"] / "head.address").read_text().strip()
    env = {**local_cluster["env"], "RAYSITTER_OUTPUT_DIR": str(out), "RAY_ADDRESS": head, "RAY_AUTH_MODE": "token"}
    result = raysitter(["tune", "search=smoke", "search.trial_backend=auto", "trainer.num_workers=2", "search.stages=[{samples:1,epochs:2}]",
                        "search.top_k=1", "preflight=false", "sweep_name=on-cluster"],
                       env, tmp_path, timeout=900)  # one stage: stages and resume are tests/test_tune_ray.py's
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "trial backend: train (auto: 2 workers per trial" in result.stdout, result.stdout[-3000:]
    client, found = runs(out, "raysitter-tune")
    parent = [r for r in found if r.info.run_name == "on-cluster"]
    (trial,) = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert parent[0].info.status == "FINISHED" and trial.info.status == "FINISHED"
    assert trial.data.params["trainer.num_workers"] == "2" and trial.data.metrics["epoch"] == 2
    assert any(a.path == "bundle" for a in client.list_artifacts(trial.info.run_id))  # logged by the trial's Ray Train worker 0
    listed = subprocess.run([str(BIN / "ray"), "list", "jobs", "--address", local_cluster["dashboard"], "--format", "json"],
                            env=env, capture_output=True, text=True, timeout=120)
    drivers = [j for j in json.loads(listed.stdout) if j["type"] == "DRIVER" and "on-cluster" in (j.get("entrypoint") or "")]
    assert drivers and drivers[0]["status"] == "SUCCEEDED", listed.stdout[-2000:]  # the cluster ran this driver's sweep
