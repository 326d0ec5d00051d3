"""raysitter ui [--port 5000]: the MLflow UI on 127.0.0.1 over the local store (see
pipelines.runtime.serve); Ctrl-C, SIGTERM or SIGHUP stop it."""
from __future__ import annotations

from pipelines.runtime.serve import serve


def main(argv: list[str] | None = None, prog: str = "raysitter ui") -> int:
    return serve(argv, prog, server=False)


if __name__ == "__main__":
    raise SystemExit(main())
