"""The warm path: a `raysitter` command finds a local Ray that is already running (`ray start
--head`), says so and runs on it; a record left by a head that was killed is passed over (the
command decides on a Ray of its own instead of waiting on a dead address)."""
from __future__ import annotations

import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def test_a_running_local_ray_is_found_and_used_and_a_stale_record_is_passed_over(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "MLFLOW_TRACKING_URI", "RAY_API_SERVER_ADDRESS")}
    port = free_port()
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--node-ip-address=127.0.0.1",
                             "--dashboard-host=127.0.0.1", f"--dashboard-port={free_port()}", "--disable-usage-stats"],
                            env={**env, "RAY_AUTH_MODE": "token"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    record = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        deadline = time.time() + 120
        while not (record.is_file() and record.read_text().strip().endswith(f":{port}")):
            assert time.time() < deadline and head.poll() is None, "ray start --head did not come up"
            time.sleep(0.5)
        address = record.read_text().strip()  # Ray records the node's own IP
        with socket.create_connection((address.rsplit(":", 1)[0], port), timeout=5):
            pass
        time.sleep(3)  # the GCS answers before the raylet has registered
        warm = subprocess.run([str(BIN / "raysitter"), "train", "trainer.epochs=2", "diagnostics=off", "tracking.log_model=false"],
                              env={**env, "RAYSITTER_OUTPUT_DIR": str(tmp_path / "warm")}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
        assert warm.returncode == 0, warm.stdout[-3000:] + warm.stderr[-3000:]
        assert f"using the running local Ray at {address} (started by ray start --head)" in warm.stdout
        assert "epoch   2/2" in warm.stdout
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # as a crash would: Ray's record of it stays behind
        head.wait(timeout=60)
    assert record.is_file() and record.read_text().strip().endswith(f":{port}")
    try:
        # what a command decides next: nothing to join, so a Ray of its own (never a wait on the dead address)
        from pipelines.runtime.ray_runner import resolve_address, running_local_ray

        started = time.monotonic()
        assert running_local_ray() is None and resolve_address({}) == "local"
        assert time.monotonic() - started < 5
    finally:
        if record.is_file() and record.read_text().strip().endswith(f":{port}"):
            record.unlink()
