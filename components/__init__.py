"""raysitter's building blocks: plain, config-agnostic classes and functions.

Only `pipelines/` reads configuration; everything here takes typed arguments.
"""

from components import legacy as _legacy

_legacy.install()  # modules pickled under the packages' former names (MLflow PyTorch models) still import
