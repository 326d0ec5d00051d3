"""Ensembles, the seed's free accuracy: averaged predictions of several models, snapshot
ensembles of one run, and Polyak / EMA averages of the weights.

Training-time options are callbacks (the `ensembling` config group); each evaluates its
ensemble on the validation and test splits at the last epoch and adds `PREFIX/val/acc`,
`PREFIX/test/acc` (and losses) next to the single model's `val/acc`, `test/acc`.
"""
from components.ensembling.averaging import WeightAveraging
from components.ensembling.predict import EnsembleForward, evaluate_forward
from components.ensembling.snapshots import SnapshotEnsemble

__all__ = ["EnsembleForward", "SnapshotEnsemble", "WeightAveraging", "evaluate_forward"]
