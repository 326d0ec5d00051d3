"""raysitter's Hydra launcher (`hydra/launcher=ray`): a multirun's jobs run concurrently on the
local Ray or a cluster, as many at once as its free resources allow. This module imports Hydra
only; Ray is imported when a multirun launches (pipelines.runtime.launching). It lives in Hydra's
`hydra_plugins` namespace (Hydra instantiates launchers only from there) and
`pipelines.runtime.app` registers it explicitly, so it is found however raysitter is installed."""
from __future__ import annotations

from collections.abc import Sequence
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class RayLauncher(Launcher):
    def __init__(self, max_concurrent: int | None = None, job_cpus: float = 0.0, drain_s: float = 60.0) -> None:
        self.max_concurrent = max_concurrent
        self.job_cpus = job_cpus
        self.drain_s = drain_s
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from pipelines.runtime.launching import launch

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        return launch(self, job_overrides, initial_job_idx)


def register() -> None:
    """Makes `hydra/launcher=ray` instantiable whether or not Hydra's own scan of the
    `hydra_plugins` namespace found this module (it does not under some editable installs)."""
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()
    if f"{RayLauncher.__module__}.{RayLauncher.__name__}" not in plugins.class_name_to_class:
        plugins.register(RayLauncher)
