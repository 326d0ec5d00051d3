"""Babysitting the learning process (CS231n): preflight checks before a run, live diagnostics
during it, the plots after it, and the weight-initialisation study."""
from components.diagnostics.diagnostics import Diagnostics, History
from components.diagnostics.preflight import CheckResult, initial_loss, lr_range_test, overfit_tiny, regularization_raises_loss

__all__ = [
    "CheckResult",
    "Diagnostics",
    "History",
    "initial_loss",
    "lr_range_test",
    "overfit_tiny",
    "regularization_raises_loss",
]
