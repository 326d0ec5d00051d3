"""The per-worker training function. `train_worker` is what Ray Train runs on each worker;
`run_training(config, LocalSession())` runs the very same code in-process (world size 1)."""
from __future__ import annotations

import logging
from pathlib import Path
import random
import shutil
import tempfile
from typing import Any

import numpy as np
import torch

from components.diagnostics.diagnostics import History
from components.engine.callbacks import Callback, ProgressPrinter
from components.engine.checkpoint import load_weights, read_train_state, usable_checkpoint, write_checkpoint
from components.engine.loop import TrainLoop
from pipelines.runtime import build
from pipelines.runtime.context import RunContext, ZooSource


class LocalSession:
    """World size 1, no Ray: reports are kept in memory, checkpoints copied to `checkpoint_root`."""

    rank, world_size = 0, 1

    def __init__(self, checkpoint_root: str | None = None, resume_from: str | None = None, device: str = "cpu") -> None:
        self.checkpoint_root = Path(checkpoint_root) if checkpoint_root else None
        self.resume_from, self.device = resume_from, torch.device(device)
        self.reports: list[dict[str, float]] = []
        self.last_checkpoint: str | None = None

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir and self.checkpoint_root:
            target = self.checkpoint_root / f"epoch_{int(metrics['epoch']):04d}"
            shutil.copytree(checkpoint_dir, target, dirs_exist_ok=True)
            self.last_checkpoint = str(target)

    def checkpoint_to_resume(self) -> str | None:
        return usable_checkpoint(self.resume_from) if self.resume_from else None


class RaySession:
    """Inside a Ray Train worker: DDP via `prepare_model`, reports via `ray.train.report`."""

    def __init__(self) -> None:
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self._resume = ray.train.get_checkpoint()
        import ray.train.torch

        self.device = ray.train.torch.get_device()

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        try:
            ray.train.report(metrics, checkpoint=checkpoint)
        except ray.exceptions.RayActorError:
            # The run's synchronisation actor is gone: Ray Train is stopping this worker group
            # (an interrupted driver's abort kills the workers, then that actor, and the kill can
            # reach this process a moment after). Wait for it rather than have Ray Train print
            # "Error in training function" with a traceback; were it a real loss, it is raised
            # 10 s later.
            import time

            time.sleep(10)
            raise

    def checkpoint_to_resume(self) -> str | None:
        return None if self._resume is None else readable_checkpoint(self._resume)


def readable_checkpoint(checkpoint: Any) -> str:
    """Ray's latest checkpoint (a `ray.train.Checkpoint`), or the newest readable one kept
    before it when it is corrupt. Checkpoints on a filesystem this worker can list (local or
    shared storage) are read in place; on object storage the kept ones are downloaded first."""
    import pyarrow.fs

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem) and Path(checkpoint.path).is_dir():
        return usable_checkpoint(checkpoint.path)
    import tempfile

    from pipelines.runtime.storage import download_checkpoints

    return usable_checkpoint(download_checkpoints(checkpoint, tempfile.mkdtemp(prefix="raysitter-resume-")))


class TuneSession(LocalSession):
    """A single-worker trial run directly in the Tune function (no Ray Train worker group):
    reports go to `ray.tune.report`; no checkpoints (trials restart from scratch on resume)."""

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        from ray import tune

        self.reports.append(dict(metrics))
        tune.report(dict(metrics))


class ReportCallback(Callback):
    """Every epoch: rank 0 writes a checkpoint, every rank reports the (already reduced) metrics."""

    def __init__(self, session: Any, meta: dict[str, Any]) -> None:
        self.session, self.meta = session, meta

    def on_epoch_end(self, loop: TrainLoop, epoch: int, metrics: dict[str, float]) -> None:
        if self.session.rank != 0 or metrics.get("diverged"):  # never checkpoint non-finite weights
            self.session.report(metrics, None)
            return
        with tempfile.TemporaryDirectory(prefix="raysitter-ckpt-") as tmp:
            meta = {**self.meta, "epoch": epoch, "metrics": metrics, "weights": loop.exported_weights}
            directory = write_checkpoint(Path(tmp) / "checkpoint", loop.module, meta, loop.state_dict(epoch))
            self.session.report(metrics, str(directory))


def rank0_callbacks(config: dict[str, Any], context: RunContext, meta: dict[str, Any]) -> list[Callback]:
    """Progress, diagnostics, MLflow logging, plots and the bundle: worker 0's extra work, in
    hook order."""
    logger = None
    if context.run_id:
        from components.tracking import MlflowEpochLogger

        logger = MlflowEpochLogger(context.tracking_uri, context.run_id)
    diagnostics = build.diagnostics(config.get("diagnostics"), log=logger.log if logger else None)
    history = History()
    progress = None if context.quiet else ProgressPrinter(config["trainer"]["epochs"], label=context.label)
    callbacks: list[Callback] = [c for c in (history, progress, diagnostics, logger) if c]
    if logger and not context.quiet and context.sweep is None:  # within long epochs: how far (the driver draws it)
        from components.tracking.mlflow_utils import MlflowStepProgress

        callbacks.append(MlflowStepProgress(context.tracking_uri, context.run_id))
    if logger and (config.get("diagnostics") or {}).get("plots", True):
        from components.tracking import MlflowRunPlots

        callbacks.append(MlflowRunPlots(context.tracking_uri, context.run_id, history, diagnostics))
    if logger and config["tracking"].get("log_bundle", True):
        from components.zoo.mlflow_bundle import MlflowBundleLogger

        callbacks.append(MlflowBundleLogger(context.tracking_uri, context.run_id, meta))
    return callbacks


def pretrained_bundle(zoo: ZooSource) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The zoo bundle to fine-tune from: the driver's verified copy when this worker can see
    it, else this worker downloads (and verifies) its own."""
    from components.zoo import BundleError, read_weights
    from components.zoo.registry import fetch

    try:
        return read_weights(zoo.path, zoo.digest)
    except BundleError:
        path, _ = fetch(zoo.tracking_uri, zoo.ref, Path(tempfile.gettempdir()) / "raysitter-zoo")
        return read_weights(path, zoo.digest)


def ensembling_callbacks(config: dict[str, Any]) -> list[Callback]:
    """The `ensembling` option (EMA / Polyak averaging, snapshot ensembles); every rank runs it
    (its evaluation is reduced over workers)."""
    node = config.get("ensembling") or {}
    return [build.make(node)] if node.get("_target_") else []


def best_epoch(tracking: dict[str, Any]) -> Any:
    """The best epoch to keep (`tracking.best_metric` / `best_mode`), and whether the bundle
    gets its weights (`tracking.bundle_weights=best`)."""
    from components.engine.best import BestEpoch

    return BestEpoch(tracking.get("best_metric", "val/acc"), tracking.get("best_mode", "max"),
                     for_bundle=tracking.get("bundle_weights", "best") == "best")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_training(config: dict[str, Any], session: Any, context: RunContext | None = None) -> dict[str, float]:
    """Builds everything from `config` (a resolved dict, never changed here) and trains, with
    `context` saying where it reports (no MLflow run when it names none); returns the last
    epoch's metrics (with test/loss and test/acc)."""
    context = context or RunContext()
    seed, trainer = config["seed"], config["trainer"]
    torch.set_num_threads(max(1, int(trainer.get("resources_per_worker", {}).get("CPU", 1))))
    splits = build.load_splits(config["data"], seed)
    zoo = context.zoo
    if zoo:  # fine-tuning: the bundle's preprocessing statistics, not recomputed ones
        from components.preprocess import Normalizer
        from components.zoo import transfer

        pretrained, info = pretrained_bundle(zoo)
        normalizer = Normalizer.from_dict(info["preprocess"])
    else:
        normalizer = build.normalizer(config["preprocess"], splits.train.sample().as_float())
    seed_everything(seed)  # identical initial weights on every rank
    model = build.model(config["model"], splits.input_shape, splits.num_classes, config.get("init"))
    resume = session.checkpoint_to_resume()
    frozen, lr_scales = [], None
    if zoo:
        transfer.load_pretrained(model, pretrained)  # every layer but the re-initialised head
        frozen = transfer.frozen_modules(model, zoo.strategy)
        transfer.freeze(frozen)
        lr_scales = transfer.lr_scales(model, zoo.lr_scale)
    if resume:
        load_weights(model, resume)
    if trainer.get("channels_last") and session.device.type == "cuda":  # before DDP wraps the parameters
        model = model.to(memory_format=torch.channels_last)
    model = session.prepare(model)
    if trainer.get("compile"):  # after DDP, as PyTorch recommends (its optimizer splits graphs at buckets)
        model = torch.compile(model)
    optimizer = build.optimizer(config["optimizer"], model, lr_scales)
    scheduler, interval = build.scheduler(config["scheduler"], optimizer)
    seed_everything(seed + session.rank)  # different shuffles/augmentations/dropout per rank
    meta = {
        "config": config,
        "normalizer": normalizer.to_dict(),
        "classes": splits.classes,
        "input_shape": list(splits.input_shape),
    }
    callbacks = ensembling_callbacks(config)  # first: they add the ensemble metrics
    if session.rank == 0:
        context = announced_run(context)
        callbacks += rank0_callbacks(config, context, meta)
    callbacks.append(ReportCallback(session, meta))
    loop = TrainLoop(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scheduler_interval=interval,
        train=splits.train,
        val=splits.val,
        test=splits.test,
        normalizer=normalizer,
        augment=build.augment(config["augment"]).to(session.device),
        batch_size=len(splits.train) if build.is_full_batch(config["optimizer"]) else trainer["batch_size"] // session.world_size,
        epochs=trainer["epochs"],
        device=session.device,
        seed=seed,
        rank=session.rank,
        world_size=session.world_size,
        callbacks=callbacks,
        frozen=frozen,
        classes=splits.classes,
        precision=trainer.get("precision", "fp32"),
        channels_last=bool(trainer.get("channels_last", False)),
        early_stopping=build.early_stopping(config.get("early_stopping")),
        best=best_epoch(config["tracking"]),
    )
    if resume:
        loop.load_state_dict(read_train_state(resume))
        if session.rank == 0:
            record_restart(context, loop)
            print(f"resumed from {resume} at epoch {loop.start_epoch} (restart {loop.restarts})", flush=True)
    return loop.fit()


def announced_run(context: RunContext) -> RunContext:
    """The context with its MLflow run id, which the driver may still have been opening when the
    fit started: waited for here, as late as possible, before worker 0's first MLflow write."""
    if context.run_id or not context.announced_as:
        return context
    from pipelines.runtime.announce import wait

    return context.tracked(wait(context.announced_as), context.tracking_uri)


def record_restart(context: RunContext, loop: TrainLoop) -> None:
    """MLflow: the metric `restarts` (step = the epoch training resumes at) and the tag
    `raysitter.restarts`, so a run page shows that (and where) a failure was survived. The
    count goes on from the run's tag, not only the checkpoint's saved state: a second failure
    before the first checkpoint after a restart resumes a checkpoint that knows one restart
    fewer."""
    if not context.run_id:
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient(context.tracking_uri)
    counted = client.get_run(context.run_id).data.tags.get("raysitter.restarts", "0")
    loop.restarts = max(loop.restarts, int(counted) + 1 if counted.isdigit() else 0)
    client.log_metric(context.run_id, "restarts", loop.restarts, step=loop.start_epoch)
    client.set_tag(context.run_id, "raysitter.restarts", str(loop.restarts))


def train_worker(payload: dict[str, Any]) -> None:
    """Ray Train's `train_loop_per_worker`: `payload` is the run's config and its context
    (`worker_payload`)."""
    # Ray Train logs every report at INFO through the root logger; our progress line says it better.
    logging.getLogger().setLevel(logging.WARNING)
    run_training(payload["config"], RaySession(), payload["context"])


def worker_payload(config: dict[str, Any], context: RunContext) -> dict[str, Any]:
    """Ray Train's `train_loop_config`: the config, and beside it the run's context."""
    return {"config": config, "context": context}
