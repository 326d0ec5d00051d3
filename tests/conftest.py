"""Shared fixtures: a fresh output folder per test, composed configs, fake datasets on disk,
and one local Ray session per test process (starting Ray costs ~10 s here; pytest-xdist runs a
process per core, each test file in one of them)."""
from __future__ import annotations

import os
from pathlib import Path
import pickle

from hydra import compose, initialize_config_dir
import numpy as np
import pytest

from pipelines.runtime.app import CONF_DIR, rewrite_group_overrides


@pytest.fixture
def output_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    out = tmp_path / "outputs"
    monkeypatch.setenv("RAYSITTER_OUTPUT_DIR", str(out))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return out


@pytest.fixture
def compose_train():
    """compose_train(["optimizer=sgd", ...]) → the composed train config (no Hydra run), with
    overrides read as the CLI reads them (`model.activation=elu` selects the nested group)."""

    def _compose(overrides: list[str] | None = None, config_name: str = "train"):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=rewrite_group_overrides(overrides or []))

    return _compose


def write_fake_cifar(root: Path, n_train_per_batch: int = 20, n_test: int = 20, seed: int = 0) -> Path:
    """Files in CIFAR-10's python format (pickled dicts, uint8 N×3072 rows, int labels)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int) -> dict:
        return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(n_train_per_batch), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(n_test), f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"label{i}" for i in range(10)]}, f)
    return root


def logged_metric(db: Path, key: str) -> float:
    """The largest value a run in this embedded MLflow store has logged for `key` (0 before any),
    read without writing: a reader must not race the writer's schema migration."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return float(conn.execute("select max(value) from metrics where key = ?", (key,)).fetchone()[0] or 0)
    except (sqlite3.Error, TypeError):
        return 0.0


def logged_epoch(db: Path) -> int:
    """The last epoch a run in this store has logged (0 before any; the `epoch` metric's value is its step)."""
    return int(logged_metric(db, "epoch"))


def wait_for_metric(db: Path, key: str, value: float, proc=None, timeout: float = 300) -> float:
    """Waits until a run in this store has logged `key` ≥ `value` (or `proc` has exited, or
    `timeout` seconds have passed); returns the largest value logged."""
    import time

    deadline = time.time() + timeout
    while logged_metric(db, key) < value and time.time() < deadline and (proc is None or proc.poll() is None):
        time.sleep(0.2)
    return logged_metric(db, key)


def wait_for_epoch(db: Path, epoch: int, proc=None, timeout: float = 300) -> int:
    """`wait_for_metric` for the `epoch` metric; returns the last epoch logged."""
    return int(wait_for_metric(db, "epoch", epoch, proc, timeout))


@pytest.fixture
def fake_cifar(tmp_path: Path) -> Path:
    return write_fake_cifar(tmp_path / "cifar")


@pytest.fixture
def fake_imagefolder(tmp_path: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for cls, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (12, 10, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for every test that needs it, with raysitter's environment: the session's
    own (address "local"), never a Ray that happens to run on this machine."""
    import ray

    from pipelines.runtime.ray_runner import init_ray

    os.environ.pop("RAY_ADDRESS", None)
    init_ray({"report_interval_s": 0.1, "address": "local"})
    yield ray
    ray.shutdown()


@pytest.fixture
def joined_ray(ray_session) -> dict[str, str]:
    """The environment for a `raysitter` subprocess that joins the session's Ray (as a user's
    command joins a running Ray given RAY_ADDRESS) instead of starting one of its own: ≈ 8 s
    less per command. Tests that signal a command's own Ray (Ctrl-C, SIGTERM) do not use it."""
    return {"RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}


def processes_named(roots: list[int], name: str) -> list[int]:
    """PIDs among `roots` and every process below them whose command line contains `name`."""
    import subprocess

    seen, queue = set(), list(roots)
    while queue:
        pid = queue.pop()
        if pid not in seen:
            seen.add(pid)
            queue += [int(c) for c in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    found = []
    for pid in seen:
        try:
            if name in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                found.append(pid)
        except OSError:
            pass
    return found


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, proc, output, what: str, timeout_s: float = 90) -> None:
    """Waits until `url`/health answers 200; if `proc` exits or time runs out, kills it and
    raises with the tail of `output()` (its log)."""
    import time
    import urllib.request

    deadline = time.time() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"{what} did not start: {output()[-2000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 (SQLite store, proxied artifacts); yields its URL
    and artifact folder."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # as `raysitter server` starts it: no job runner
    )
    wait_for_health(url, proc, lambda: (root / "server.log").read_text(), "mlflow server")
    yield {"url": url, "artifacts": root / "artifacts"}
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory):
    """A real S3-compatible server (`moto_server` from moto[server]) on 127.0.0.1 with one bucket;
    yields its endpoint, the bucket, a boto3 client and the AWS environment a client needs."""
    import subprocess
    import sys
    import time
    import urllib.request

    import boto3

    root = tmp_path_factory.mktemp("s3")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(root / "moto.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(endpoint, timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"moto_server did not start: {(root / 'moto.log').read_text()[-2000:]}")
            time.sleep(0.2)
    env = {"AWS_ACCESS_KEY_ID": "raysitter-test", "AWS_SECRET_ACCESS_KEY": "raysitter-test-secret",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    client.create_bucket(Bucket="raysitter")
    yield {"endpoint": endpoint, "bucket": "raysitter", "client": client, "env": env}
    proc.terminate()
    proc.wait(timeout=30)


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject.toml): a test process per core, at most 4; each one that needs Ray
    starts its own session Ray, and the tests themselves start Ray clusters and servers."""
    return max(1, min(4, os.cpu_count() or 1))


# Seconds each file with slow tests took in a whole run (`--durations=0`, AMD EPYC, 2 cores,
# 2026-12-02): only their order matters. A file not listed counts 20 s per slow test.
FILE_SECONDS = {
    "test_cluster.py": 320, "test_tune_ray.py": 283, "test_launcher.py": 180, "test_zoo_server.py": 178,
    "test_object_storage.py": 157, "test_train_ray.py": 142, "test_cli_errors.py": 110, "test_resume.py": 94,
    "test_warm_ray.py": 51, "test_fast_path.py": 35, "test_check_ray.py": 30, "test_zoo_trust.py": 26, "test_run_page.py": 23,
    "test_ui_browser.py": 33,
}


def pytest_collection_modifyitems(config, items) -> None:
    """The longest files first (each file's own order kept; pyproject.toml turns off xdist's own
    reordering, by number of tests, which put a one-test 95 s file last): side by side
    (pytest-xdist, one file per process) the long ones start early and the quick ones fill the
    gaps at the end, instead of one process finishing a long file alone."""
    from collections import Counter

    slow = Counter(item.path.name for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, 20 * slow[item.path.name]))
