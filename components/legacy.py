"""Names raysitter used before each component package took its config group's name
(`conf/model` ↔ `components.model`, …). Artifacts written earlier name the old ones: bundle.json,
checkpoint metadata, run and sweep state files (`_target_` strings, mapped by
`current_targets`), and MLflow PyTorch models, whose pickles import the old modules (served by
an import alias that `install` puts on sys.meta_path)."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

RENAMED = {
    "components.models": "components.model",
    "components.optim": "components.optimizer",
    "components.schedules": "components.scheduler",
    "components.ensembles": "components.ensembling",
    "components.checks": "components.diagnostics",
}


def current_name(name: str) -> str:
    """A module or `_target_` path under its package's current name."""
    for old, new in RENAMED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old):]
    return name


def current_targets(node: Any) -> Any:
    """A copy of a stored config whose `_target_` paths name the current packages."""
    if isinstance(node, dict):
        return {k: current_name(v) if k == "_target_" and isinstance(v, str) else current_targets(v) for k, v in node.items()}
    if isinstance(node, list):
        return [current_targets(v) for v in node]
    return node


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import components.models.mlp` gives `components.model.mlp` itself (one module object)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if current_name(fullname) == fullname:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(current_name(spec.name))

    def exec_module(self, module: Any) -> None:
        pass


def install() -> None:
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())  # before the path finder, which would load a second copy from the parent's folder
