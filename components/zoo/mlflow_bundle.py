"""Logs the trained network as a bundle (`bundle/` in the run's artifacts) at the last epoch,
before the final report: Ray Tune may end a trial inside that report, so `on_fit_end` would
come too late. The run's tag `raysitter.manifest_sha256` records the bundle's manifest digest."""
from __future__ import annotations

from pathlib import Path
import tempfile
from typing import Any

from mlflow.tracking import MlflowClient

from components.engine.callbacks import Callback
from components.zoo.bundle import bundle_info, manifest_digest, write_bundle
from components.zoo.registry import BUNDLE_PATH, DIGEST_TAG


class MlflowBundleLogger(Callback):
    def __init__(self, tracking_uri: str, run_id: str, meta: dict[str, Any]) -> None:
        self.client, self.run_id, self.meta = MlflowClient(tracking_uri), run_id, meta

    def on_epoch_end(self, loop: Any, epoch: int, metrics: dict[str, float]) -> None:
        if not loop.is_last(epoch) or metrics.get("diverged"):
            return
        weights, chosen, chosen_metrics = loop.bundle_weights(epoch, metrics)  # the best epoch's, or the last's
        info = bundle_info({**self.meta, "weights": loop.exported_weights}, chosen_metrics, run_id=self.run_id, epoch=chosen)
        with tempfile.TemporaryDirectory() as tmp:
            folder = write_bundle(Path(tmp) / BUNDLE_PATH, weights, info)
            self.client.log_artifacts(self.run_id, str(folder), BUNDLE_PATH)
            # the run's record of what it logged: `zoo push` and ensembles of run ids check it
            self.client.set_tag(self.run_id, DIGEST_TAG, manifest_digest(folder))
            self.client.set_tag(self.run_id, "raysitter.bundle_epoch", str(chosen))
