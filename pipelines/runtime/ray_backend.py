"""What raysitter hands the Ray Train controller in place of Ray's own parts: the TorchTrainer
backend for a run of one worker on the CPU (`ray_runner.torch_config`), and the scaling policy
for a Ray a raysitter command started (`ray_runner.raysitter_trainer`). Both are unpickled by
the controller, whose process has no other use for torch: this module must not import it (nor
anything that does)."""
from __future__ import annotations

from typing import Any

from ray.train.backend import Backend, BackendConfig
from ray.train.v2._internal.execution.scaling_policy import FixedScalingPolicy


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


class FixedRayScalingPolicy(FixedScalingPolicy):
    """Ray Train's fixed scaling policy without its resource requests. Ray's registers every
    run's workers with an autoscaling coordinator, a detached actor (a Python process importing
    Ray Data, ≈ 2 CPU-s) that the controller waits on, up to 5 s, before it starts the workers;
    it tells a cluster's autoscaler what to add. A Ray a raysitter command started on its own
    machine has no autoscaler: the coordinator would only cost a fit's start its process, and
    print "Failed to send resource request" with a traceback when it came up slower than 5 s
    (seen with both cores busy)."""

    def _maybe_send_resource_request(self) -> None:
        pass

    def _send_resource_request(self) -> None:
        pass

    def _cancel_resource_request(self) -> None:
        pass
