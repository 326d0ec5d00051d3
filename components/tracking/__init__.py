"""MLflow tracking helpers: store URIs, run metadata and a per-epoch logging callback."""
from components.tracking.mlflow_utils import (
    MlflowEpochLogger,
    MlflowRunPlots,
    TrackingUnreachableError,
    check_reachable,
    create_sqlite_store,
    default_tracking_uri,
    ensure_experiment,
    environment_tags,
    flatten,
    redact,
    scoped_tracking_uri,
)

__all__ = [
    "MlflowEpochLogger",
    "MlflowRunPlots",
    "TrackingUnreachableError",
    "check_reachable",
    "create_sqlite_store",
    "default_tracking_uri",
    "ensure_experiment",
    "environment_tags",
    "flatten",
    "redact",
    "scoped_tracking_uri",
]
