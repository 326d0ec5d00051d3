"""The MLflow server behind `raysitter ui` and `raysitter server`: MLflow's UI and tracking server over the store the
pipelines write to (default: the embedded SQLite store and artifacts in ./outputs).

    raysitter ui [--port 5000]                      # 127.0.0.1 only: review runs in a browser
    raysitter server --host 0.0.0.0 --allowed-hosts head-node:5000,10.0.0.5:5000
                                                    # a tracking server a cluster's jobs log to

Both serve artifacts through the server (`--artifacts-destination`), so a job on another node
uploads checkpoints, plots and bundles over HTTP without sharing a file system. The address is
printed once the server answers; a taken port is refused (exit 2); Ctrl-C, SIGTERM and SIGHUP
stop the server's whole process tree.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import time
from typing import Any
import urllib.request

from components.tracking import create_sqlite_store, default_tracking_uri, redact

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1 (got {text!r}); pass e.g. --workers 2")
    return int(text)


def parser(prog: str, server: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--output-dir", default=os.environ.get("RAYSITTER_OUTPUT_DIR", "outputs"))
    p.add_argument("--backend-store-uri", default=None, help="default: $MLFLOW_TRACKING_URI or OUTPUT_DIR/mlflow.db")
    if server:
        p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface; needs --allowed-hosts)")
        p.add_argument("--allowed-hosts", default=None, help="Host headers MLflow accepts besides localhost, e.g. head:5000,10.0.0.5:5000")
        p.add_argument("--workers", type=positive_int, default=2, help="server processes (default 2)")
        p.add_argument("--artifacts-destination", default=None,
                       help="where the server keeps artifacts: a folder (default OUTPUT_DIR/mlartifacts) or s3://BUCKET/PREFIX")
        p.add_argument("--s3-endpoint", default=None,
                       help="an S3-compatible store's URL for s3:// artifacts (default: $MLFLOW_S3_ENDPOINT_URL, $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL; none: AWS)")
    else:
        p.add_argument("--workers", type=positive_int, default=1, help="server processes (default 1: the UI for one person)")
    return p


def serve(argv: list[str] | None, prog: str, server: bool) -> int:
    args = parser(prog, server).parse_args(argv)
    output = Path(args.output_dir).resolve()
    uri = args.backend_store_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(output)
    host = getattr(args, "host", "127.0.0.1")
    if uri.startswith("http"):
        print(f"raysitter {'server' if server else 'ui'}: {redact(uri)} is already a server; open it in a browser.")
        return 0
    if not server and uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        print(
            f"raysitter: error in `--backend-store-uri`: {uri} does not exist yet. Fix: run `raysitter train` "
            "first, or pass --output-dir / --backend-store-uri of an existing store.",
            file=sys.stderr,
        )
        return 2
    if server and host not in LOOPBACK and not args.allowed_hosts:
        print(
            f"raysitter: error in `--host`: binding {host} exposes the tracking store to the network, and MLflow "
            "answers only requests addressed to localhost unless told which names its clients use. Fix: pass "
            "--allowed-hosts with the address(es) the cluster uses to reach this machine (e.g. --allowed-hosts "
            f"head-node:{args.port},10.0.0.5:{args.port}), and keep the port behind the cluster's firewall.",
            file=sys.stderr,
        )
        return 2
    if not 1 <= args.port <= 65535:
        print(f"raysitter: error in `--port`: {args.port} is not a TCP port. Fix: pass a number from 1024 to 65535, e.g. --port 5000.",
              file=sys.stderr)
        return 2
    taken = port_taken(host, args.port)
    if taken:
        print(
            f"raysitter: error in `--port`: port {args.port} on {host} is taken ({taken}): another server (perhaps an "
            f"earlier raysitter ui) holds it, and a new one would fail or leave you looking at that server's store. "
            f"Fix: pass another port, e.g. --port {args.port + 1}, or stop what holds {args.port}.",
            file=sys.stderr,
        )
        return 2
    from components.tracking.mlflow_utils import missing_driver

    missing = missing_driver(uri)
    if missing:
        print(
            f"raysitter: error in `--backend-store-uri`: {redact(uri)} needs the database driver `{missing[0]}`, which is "
            f"not installed here, so MLflow's server could not start. Fix: install it "
            f"(pip install '{missing[1]}'), or keep the store in SQLite (--output-dir).",
            file=sys.stderr,
        )
        return 2
    if server and refused_folders(uri, output, args.artifacts_destination):
        return 2
    destination, env = artifacts(getattr(args, "artifacts_destination", None), getattr(args, "s3_endpoint", None), output)
    if destination is None:
        return 2
    if Path(uri.removeprefix("sqlite:///")).parent.is_dir():
        create_sqlite_store(uri)  # a new store: MLflow's schema copied, not migrated anew by each server worker
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(args.port),
        "--backend-store-uri", uri, "--artifacts-destination", destination,
    ]
    cmd += ["--workers", str(args.workers)]  # MLflow's default is 4, each a process importing MLflow (≈ 3 CPU-s)
    if server:
        if args.allowed_hosts:
            cmd += ["--allowed-hosts", args.allowed_hosts]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    with stop_on_signals():
        proc = subprocess.Popen(cmd, start_new_session=True, env=env)  # its own process group: the server and its workers
        try:
            if not answering(f"http://{shown}:{args.port}", proc):
                print(f"raysitter: the MLflow server on port {args.port} did not start (exit code {proc.poll()}; its own "
                      "message is above).", file=sys.stderr, flush=True)
                return 1
            print(f"MLflow {'tracking server' if server else 'UI'} on http://{shown}:{args.port}  (store {redact(uri)}, artifacts "
                  f"{destination}; Ctrl-C stops it)", flush=True)
            if server:
                print(f"jobs log to it with: export MLFLOW_TRACKING_URI=http://{shown if host in LOOPBACK else '<this-host>'}:{args.port}", flush=True)
            proc.wait()
            return 1  # the server ended by itself
        except Stopped:
            print("stopped", flush=True)
            return 0
        finally:
            stop_group(proc)


def refused_folders(uri: str, output: Path, destination: str | None) -> bool:
    """A server writes its embedded store's folder and (unless given another destination)
    OUTPUT_DIR/mlartifacts: each must be a folder it can write or make. True after printing
    why one is refused."""
    from pipelines.runtime.storage import not_a_folder

    wanted = [(Path(uri.removeprefix("sqlite:///")).parent, "--output-dir" if uri == default_tracking_uri(output) else "--backend-store-uri",
               f"the server's store ({Path(uri).name}) goes there")] if uri.startswith("sqlite:///") else []
    if not destination:
        wanted.append((output / "mlartifacts", "--output-dir", "the server keeps every run's artifacts there"))
    for folder, flag, what in wanted:
        why = not_a_folder(folder)
        if why:
            print(f"raysitter: error in `{flag}`: {folder} {why}; {what}. Fix: pass a folder you can write as {flag}.",
                  file=sys.stderr)
            return True
    return False


def artifacts(destination: str | None, s3_endpoint: str | None, output: Path) -> tuple[str | None, dict[str, str]]:
    """The server's artifact destination and environment: a folder (made absolute), or an S3
    location whose bucket answers (the endpoint reaches MLflow's S3 client as
    MLFLOW_S3_ENDPOINT_URL). (None, …) after printing why a destination is refused."""
    from pipelines.runtime import storage
    from pipelines.runtime.errors import UserError

    env = dict(os.environ)
    # MLflow 3's job runner (six Huey consumer processes, for its GenAI features: judges, prompt
    # optimisation, trace roll-ups) is nothing raysitter's runs use; it took ≈ 22 CPU-s and 4 s
    # of a server's start. A user who wants it sets the variable to true.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if not destination:
        return str(output / "mlartifacts"), env
    if not storage.is_remote(destination):
        why = storage.not_an_address(destination)
        if why:
            print(f"raysitter: error in `--artifacts-destination`: {destination!r} {why}. Fix: pass a folder or s3://BUCKET/PREFIX.",
                  file=sys.stderr)
            return None, env
        folder = Path(destination).expanduser().resolve()
        why = storage.not_a_folder(folder)
        if why:
            print(f"raysitter: error in `--artifacts-destination`: {folder} {why}; the server keeps every run's artifacts there. "
                  "Fix: pass a folder you can write, or s3://BUCKET/PREFIX.", file=sys.stderr)
            return None, env
        return str(folder), env
    endpoint = s3_endpoint or os.environ.get("MLFLOW_S3_ENDPOINT_URL") or storage.endpoint({})
    try:
        storage.check_bucket("--artifacts-destination", destination, {"storage_endpoint": endpoint})
    except UserError as e:
        print(e.paragraph(), file=sys.stderr)
        return None, env
    if endpoint:
        env["MLFLOW_S3_ENDPOINT_URL"] = endpoint
    return destination.rstrip("/"), env


class Stopped(Exception):
    """SIGINT, SIGTERM or SIGHUP reached `raysitter ui` / `raysitter server`."""


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP (a closed terminal) all raise Stopped, so the server's process
    group is stopped on the way out; the previous handlers come back afterwards. Once stopping,
    further signals (Ctrl-C pressed again) are ignored: they would cut the stop short, leave
    the server's processes running and end in a traceback (stop_group's own waits are bounded)."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def handler(signum: int, frame: Any) -> None:
        for s in signals:
            signal.signal(s, signal.SIG_IGN)
        raise Stopped(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def stop_group(proc: subprocess.Popen, timeout_s: float = 15) -> None:
    """SIGTERM to the server's whole process group, SIGKILL if it lingers."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived the parent
    except ProcessLookupError:
        pass


def port_taken(host: str, port: int) -> str | None:
    """Why `port` cannot be bound on `host` (None when it can)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # like the server itself: TIME_WAIT is no owner
        try:
            sock.bind((host, port))
        except OSError as e:
            return e.strerror or str(e)
    return None


def answering(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> bool:
    """Waits until this server (still our child) answers /health; False if it exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200 and proc.poll() is None:
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False
