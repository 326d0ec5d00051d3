"""Turns a pipeline function into a Hydra app with raysitter's conventions.

- configs come from the packaged `conf/` folder;
- `group.sub=option` is accepted for nested config groups (`model.activation=elu` means
  `model/activation=elu`), so every choice reads like a config key;
- a `UserError` prints one paragraph and exits 2; Hydra's own composition errors (an unknown
  group option, a bad override) also exit 2; a model bundle that fails verification is refused
  with exit 1; failures while running exit 1.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
import sys
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

import conf
from components.zoo import BundleError
from pipelines.errors import UserError, refuse_artifact, report_and_exit

CONF_DIR = Path(conf.__file__).parent

# ${mul:a,b} in config files, e.g. a cyclic schedule's max_lr: ${mul:${optimizer.lr},10}
if not OmegaConf.has_resolver("mul"):
    OmegaConf.register_new_resolver("mul", lambda a, b: float(a) * float(b))


def conf_targets() -> frozenset[str]:
    """Every `_target_` raysitter's own config files name: what a saved run state may build."""
    import yaml

    from components.zoo.bundle import targets

    return frozenset(value for f in CONF_DIR.rglob("*.yaml") for _, value in targets(yaml.safe_load(f.read_text()) or {}))


def rewrite_group_overrides(args: Sequence[str], conf_dir: Path = CONF_DIR) -> list[str]:
    """`model.activation=elu` → `model/activation=elu` when conf/model/activation/ is a group."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and "." in key and not key.startswith(("-", "+", "~", "hydra.")) and (conf_dir / key.replace(".", "/")).is_dir():
            arg = f"{key.replace('.', '/')}={value}"
        out.append(arg)
    return out


def hydra_app(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[..., Any]]:
    def decorate(task: Callable[[DictConfig], Any]) -> Callable[..., Any]:
        entered = False

        @hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")
        def hydra_task(cfg: DictConfig) -> Any:
            nonlocal entered
            entered = True
            try:
                return task(cfg)
            except UserError as e:
                report_and_exit(e)
            except BundleError as e:
                refuse_artifact(e)

        def run(argv: Sequence[str] | None = None, prog: str | None = None) -> Any:
            nonlocal entered
            entered = False
            args = list(sys.argv[1:] if argv is None else argv)
            sys.argv = [prog or sys.argv[0], *rewrite_group_overrides(args)]
            try:
                return hydra_task()
            except SystemExit as e:
                if e.code not in (0, None) and not entered:
                    raise SystemExit(2) from None  # Hydra refused the config or the overrides
                raise

        run.task = task  # the undecorated pipeline, for tests
        return run

    return decorate
