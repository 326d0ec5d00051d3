"""`raysitter ui [--port N] [--backend-store-uri URI]`: the MLflow UI on 127.0.0.1 over the
store the pipelines write to (default: the embedded SQLite store in ./outputs)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import subprocess
import sys

from components.tracking import default_tracking_uri


def main(argv: list[str] | None = None, prog: str = "raysitter ui") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--output-dir", default=os.environ.get("RAYSITTER_OUTPUT_DIR", "outputs"))
    parser.add_argument("--backend-store-uri", default=None, help="default: $MLFLOW_TRACKING_URI or OUTPUT_DIR/mlflow.db")
    args = parser.parse_args(argv)
    output = Path(args.output_dir).resolve()
    uri = args.backend_store_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(output)
    if uri.startswith("http"):
        print(f"raysitter ui: {uri} is already a server; open it in a browser.")
        return 0
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        print(
            f"raysitter: error in `--backend-store-uri`: {uri} does not exist yet. Fix: run `raysitter train` "
            "first, or pass --output-dir / --backend-store-uri of an existing store.",
            file=sys.stderr,
        )
        return 2
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(args.port),
        "--backend-store-uri", uri, "--artifacts-destination", str(output / "mlartifacts"),
    ]
    print(f"MLflow UI on http://127.0.0.1:{args.port}  (store {uri}; Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
