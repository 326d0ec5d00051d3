"""`raysitter server`: an MLflow tracking server a cluster's jobs can log to (see pipelines.ui)."""
from pipelines.ui import server_main as main

__all__ = ["main"]
