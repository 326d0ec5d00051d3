"""The TorchTrainer backend for a run of one worker on the CPU (`ray_runner.torch_config`).
Unpickled by the Ray Train controller, whose process has no other use for torch: this module
must not import it (nor anything that does)."""
from __future__ import annotations

from typing import Any

from ray.train.backend import Backend, BackendConfig


class OneCpuWorkerBackend(Backend):
    """Nothing to set up or tear down: a lone CPU worker has no process group to join, and no
    device to pick or cache to empty."""


class OneCpuWorkerConfig(BackendConfig):
    """Ray's TorchConfig for one CPU worker, less the gloo process group of one: what Ray Train
    records of it (framework, backend) stays the same."""

    backend, init_method, timeout_s = "gloo", "env", 1800  # TorchConfig's fields, as TorchTrainer reads them

    @property
    def backend_cls(self) -> type:
        return OneCpuWorkerBackend

    @property
    def framework(self) -> Any:
        from ray.train.v2._internal.util import TrainingFramework

        return TrainingFramework.TORCH

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "init_method": self.init_method, "timeout_s": self.timeout_s, "process_group": False}
