"""`raysitter ui` and `raysitter server`: MLflow's UI and tracking server over the store the
pipelines write to (default: the embedded SQLite store and artifacts in ./outputs).

    raysitter ui [--port 5000]                      # 127.0.0.1 only: review runs in a browser
    raysitter server --host 0.0.0.0 --allowed-hosts head-node:5000,10.0.0.5:5000
                                                    # a tracking server a cluster's jobs log to

Both serve artifacts through the server (`--artifacts-destination`), so a job on another node
uploads checkpoints, plots and bundles over HTTP without sharing a file system.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import signal
import subprocess
import sys

from components.tracking import default_tracking_uri

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parser(prog: str, server: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--output-dir", default=os.environ.get("RAYSITTER_OUTPUT_DIR", "outputs"))
    p.add_argument("--backend-store-uri", default=None, help="default: $MLFLOW_TRACKING_URI or OUTPUT_DIR/mlflow.db")
    if server:
        p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface; needs --allowed-hosts)")
        p.add_argument("--allowed-hosts", default=None, help="Host headers MLflow accepts besides localhost, e.g. head:5000,10.0.0.5:5000")
        p.add_argument("--workers", type=int, default=2)
    return p


def serve(argv: list[str] | None, prog: str, server: bool) -> int:
    args = parser(prog, server).parse_args(argv)
    output = Path(args.output_dir).resolve()
    uri = args.backend_store_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(output)
    host = getattr(args, "host", "127.0.0.1")
    if uri.startswith("http"):
        print(f"raysitter {'server' if server else 'ui'}: {uri} is already a server; open it in a browser.")
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
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(args.port),
        "--backend-store-uri", uri, "--artifacts-destination", str(output / "mlartifacts"),
    ]
    if server:
        cmd += ["--workers", str(args.workers)]
        if args.allowed_hosts:
            cmd += ["--allowed-hosts", args.allowed_hosts]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"MLflow {'tracking server' if server else 'UI'} on http://{shown}:{args.port}  (store {uri}; Ctrl-C stops it)", flush=True)
    if server:
        print(f"jobs log to it with: export MLFLOW_TRACKING_URI=http://{shown if host in LOOPBACK else '<this-host>'}:{args.port}", flush=True)
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        print("stopped", flush=True)
        return 0


def main(argv: list[str] | None = None, prog: str = "raysitter ui") -> int:
    return serve(argv, prog, server=False)


def server_main(argv: list[str] | None = None, prog: str = "raysitter server") -> int:
    return serve(argv, prog, server=True)


if __name__ == "__main__":
    raise SystemExit(main())
