"""raysitter server: an MLflow tracking server a cluster's jobs can log to (see
pipelines.runtime.serve)."""
from __future__ import annotations

from pipelines.runtime.serve import serve


def main(argv: list[str] | None = None, prog: str = "raysitter server") -> int:
    return serve(argv, prog, server=True)


if __name__ == "__main__":
    raise SystemExit(main())
