"""A training run from start to finish, shared by `raysitter train` and `raysitter finetune`:
validate → name the run → Ray Train, its MLflow run opening beside the fit's start → log the
result → register it; the command line's exits (1 failed or diverged, 130 interrupted) and the
run's name and description."""
from __future__ import annotations

from dataclasses import replace
import logging
import re
import sys
import time
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pipelines.runtime import resume, validate
from pipelines.runtime.context import RunContext
from pipelines.runtime.multirun import group_tags, in_multirun
from pipelines.runtime.tracking import RunOpening, RunTracker, ignore_stops, tracked_opening


NAME_CHARS = re.compile(r"^[\w.\-+,@:\[\]]+$")  # what a run name (and its storage folder) may hold
NOT_IN_NAMES = ("hydra.", "tracking.", "trainer.address", "resume", "output_dir")


def key_overrides(overrides: list[str], limit: int = 3, longest: int = 12) -> list[str]:
    """The short value overrides worth a run name (`optimizer.lr=0.01` → `lr=0.01`): group
    choices are in the name already; bookkeeping keys, paths (`data.root=…`) and long or odd
    values stay out (they are in the run's params and its `command` tag)."""
    out = []
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if not sep or "." not in key or key.startswith(NOT_IN_NAMES) or "/" in key:
            continue
        if len(value) > longest or not NAME_CHARS.match(value) or key.endswith(("root", "uri", "path", "dir")):
            continue
        out.append(f"{key.rsplit('.', 1)[-1]}={value}")
    return out[:limit]


def run_name(config: dict[str, Any], choices: dict[str, Any], pipeline: str, overrides: list[str] | None = None,
             context: RunContext | None = None) -> str:
    if config["tracking"].get("run_name"):
        return config["tracking"]["run_name"]
    zoo = context.zoo if context else None
    if zoo:  # fine-tuning: the architecture is the zoo model's
        parts = [pipeline, zoo.ref.replace("@", "-").replace("/", "-v"), zoo.strategy, choices.get("data")]
    else:
        parts = [pipeline, choices.get("model"), choices.get("model/activation"), choices.get("optimizer"), choices.get("data")]
    parts += key_overrides(overrides or [])
    job = group_tags().get("raysitter.multirun.job") if HydraConfig.initialized() else None
    if job is not None:  # jobs of one multirun start in the same second, several with the same key overrides
        parts.append(f"job{job}")
    return "-".join(str(p) for p in parts if p) + time.strftime("-%Y%m%d-%H%M%S")


def hydra_tags(pipeline: str) -> tuple[dict[str, str], dict[str, Any]]:
    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    tags = {
        "pipeline": pipeline,
        "hydra.overrides": " ".join(overrides) or "(none)",
        "command": " ".join(["raysitter", pipeline, *overrides]),
        **group_tags(),
    }
    return tags, dict(hc.runtime.choices)


def describe(config: dict[str, Any], choices: dict[str, Any], tags: dict[str, str], context: RunContext,
             metrics: dict[str, float] | None = None, seconds: float | None = None) -> str:
    """The run's description in the MLflow UI (markdown): what it was, how to reproduce it and,
    once finished, how it went."""
    t, opt = config["trainer"], config["optimizer"]
    model = choices.get("model") or str(config["model"].get("_target_", "?")).rsplit(".", 1)[-1]
    what = (f"**{tags.get('pipeline', 'train')}** · {model} ({choices.get('model/activation', '-')}) · "
            f"{choices.get('optimizer', '?')} lr {opt.get('lr')} · {choices.get('scheduler', '-')} schedule · "
            f"{choices.get('data', '?')} · {t['epochs']} epochs · {t['num_workers']} worker(s), global batch {t['batch_size']}")
    if context.zoo:
        what += f" · fine-tuned from zoo model `{context.zoo.ref}` (strategy {context.zoo.strategy})"
    lines = [what]
    if metrics:
        if metrics.get("diverged"):
            outcome = f"**diverged** at epoch {int(metrics.get('epoch', 0))} (train/loss {metrics.get('train/loss')})"
        else:
            outcome = (f"val/acc **{metrics.get('val/acc', float('nan')):.4f}**, test/acc **{metrics.get('test/acc', float('nan')):.4f}**, "
                       f"train/acc {metrics.get('train/acc', float('nan')):.4f} (train − val gap {metrics.get('gap/train_val_acc', float('nan')):+.4f})")
        for prefix in ("ema", "polyak", "snapshots"):
            if f"{prefix}/test/acc" in metrics:
                outcome += f"; {prefix} test/acc {metrics[f'{prefix}/test/acc']:.4f}"
        if "best/epoch" in metrics and not metrics.get("diverged"):
            metric = config["tracking"].get("best_metric", "val/acc")
            outcome += (f"; best epoch by {metric}: {int(metrics['best/epoch'])} (test/acc {metrics.get('best/test/acc', float('nan')):.4f}); "
                        f"the bundle holds the {'best' if config['tracking'].get('bundle_weights', 'best') == 'best' else 'last'} epoch's weights")
        stopped = " (early stopping ended it there)" if metrics.get("stopped_early") else ""
        lines += ["", f"Result after {int(metrics.get('epoch', 0))} epochs{stopped} in {seconds or 0:.0f} s: {outcome}."]
    lines += ["", "Reproduce (from the commit in the tag `git.commit`):", "", f"    {tags.get('command', '')}"]
    if metrics:
        lines += ["", "Artifacts: `plots/` (loss, accuracy, update ratios, activations, confusion matrix), "
                  "`samples/augmented.png`, `config.yaml`, `bundle/` (model zoo), `model/` (MLflow PyTorch model)."]
    return "\n".join(lines)


def log_final_model(tracker: RunTracker, checkpoint_dir: str) -> None:
    """The trained network with its preprocessing, in MLflow's PyTorch flavour with a signature."""
    import mlflow
    import torch

    from components.preprocess import Preprocessed
    from pipelines.runtime import build

    from components.tracking import scoped_tracking_uri

    net, normalizer, meta = build.model_from_checkpoint(checkpoint_dir)
    example = torch.rand(2, *meta["input_shape"]).numpy()
    with scoped_tracking_uri(tracker.uri), mlflow.start_run(run_id=tracker.run_id):
        mlflow.pytorch.log_model(
            Preprocessed(net, normalizer).eval(),
            name="model",
            input_example=example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
    tracker.ended = True  # leaving start_run's block marked the run FINISHED


def prepare_model_export() -> None:
    """Loads what `log_final_model` needs (torch.export with torch's compiler, MLflow's PyTorch
    flavour, MLflow's map of installed packages, which it reads to check the model's pinned
    requirement: ≈ 3 s together here) while the fit runs; a failure here changes nothing (the
    export loads it again and reports)."""
    import importlib

    try:
        for module in ("mlflow.pytorch", "torch._dynamo", "torch.export._trace"):
            importlib.import_module(module)
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()
    except Exception:
        pass


def train(cfg: DictConfig, pipeline: str = "train", adjust: Any = None) -> dict[str, float]:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    overrides = list(HydraConfig.get().overrides.task)
    if cfg.get("resume"):  # the interrupted run's own config, MLflow run and name
        current = {"trainer": OmegaConf.to_container(cfg.trainer, resolve=True)}
        state = resume.load(str(cfg.resume), validate.absolute(cfg.output_dir), overrides, current)
        config, context, name, tags, choices = state["config"], state["context"], state["name"], state["tags"], state["choices"]
        net, resume_run_id = None, context.run_id
        key = state.get("key", name)  # runs saved before storage keys: the folder is the name
        print(f"raysitter {pipeline}: resuming {name} (MLflow run {resume_run_id})", flush=True)
    else:
        run = validate.prepare(cfg, adjust)
        config, net, context = run.config, run.net, run.context
        tags, choices = hydra_tags(pipeline)
        tags.update(context.tags)
        if run.pins:  # what this machine decided, beside the command line (credentials masked)
            tags["raysitter.pinned"] = " ".join(redact_override(p) for p in run.pins)[:5000]
        name = run_name(config, choices, pipeline, overrides, context)
        tags["mlflow.note.content"] = describe(config, choices, tags, context)
        resume_run_id, key = None, resume.new_storage_key(config["output_dir"], name)
        print(f"raysitter {pipeline}: {name}", flush=True)
        earlier = resume.same_name(config["output_dir"], name)
        if earlier:
            print(f"raysitter {pipeline}: a run named {name!r} exists already; this is a new run, trained from scratch "
                  f"(to continue the earlier one instead: {resume.command(pipeline, earlier[-1])})", flush=True)
        if "raysitter.multirun.job" in tags and not context.label:  # concurrent jobs' epoch lines interleave
            context = replace(context, label=f"job{tags['raysitter.multirun.job']}")
    from pipelines.runtime import ray_runner

    started = time.perf_counter()
    ray_start = ray_runner.RayStart(config["trainer"], one_fit=not in_multirun())
    if net is None:  # resuming: the run exists, its id is known
        opening = RunOpening(lambda: RunTracker(config, name, tags, resume_run_id))
    else:  # opened beside Ray Train's start; worker 0 waits for the id (announce.py)
        opened = context

        def open_new_run() -> RunTracker:
            tracker = RunTracker(config, name, tags)
            try:
                tracker.log_config(config)
                tracker.log_dataset(config, choices.get("data") or "data", run.sizes, run.num_classes)
                tracker.log_model_summary(net)
                resume.save(config, opened.tracked(tracker.run_id, tracker.uri), name, key, tags, choices, run.overrides)
            except BaseException:
                tracker.end("FAILED")
                raise
            return tracker

        opening = RunOpening(open_new_run)
        context = context.to_be_announced(key, config["tracking"]["uri"])
    try:
        with tracked_opening(opening):
            metrics, checkpoint = fit_and_log(config, context, key, opening, choices, tags, started, ray_start)
    except KeyboardInterrupt:
        if opening.settle() is None:  # no run, nothing saved: nothing to resume
            raise
        raise Interrupted(key, pipeline) from None
    tracker = opening.tracker()
    print_summary(metrics, tracker, checkpoint, time.perf_counter() - started)
    register(config, tracker.uri, tracker.run_id)
    return metrics


def redact_override(override: str) -> str:
    from components.tracking import redact

    key, sep, value = override.partition("=")
    if not key.endswith("uri"):
        return override
    quote = "'" if value[:1] == value[-1:] == "'" and len(value) > 1 else ""
    return f"{key}{sep}{quote}{redact(value.strip(quote) if quote else value)}{quote}"


def fit_and_log(config: dict[str, Any], context: RunContext, key: str, opening: RunOpening, choices: dict[str, Any],
                tags: dict[str, str], started: float, ray_start: Any) -> tuple[dict[str, float], str | None]:
    """Ray Train (its run named by the storage `key`), then the run's result in MLflow:
    description, outcome, checkpoint, model. The MLflow run opens beside the fit's start."""
    from pipelines.runtime import announce, ray_runner

    from pipelines.runtime.progress import EpochProgress

    export = config["tracking"].get("log_model", True)

    def beside() -> None:  # the driver's own work while Ray Train starts its processes
        tracker = opening.settle()
        if context.announced_as:
            ray_start.ready.wait()
            if ray_start.error is None:
                try:
                    if tracker is not None:
                        announce.publish(context.announced_as, tracker.run_id)
                    else:
                        announce.publish_failure(context.announced_as, "the driver could not open the MLflow run (it says why)")
                except Exception as e:  # Ray's store did not answer: worker 0 gives up waiting after announce.wait's timeout
                    print(f"raysitter: could not tell worker 0 its MLflow run through Ray ({type(e).__name__}: {e})",
                          file=sys.stderr, flush=True)
        if tracker is not None and export:  # what the model export needs, loaded while the fit runs
            prepare_model_export()

    try:
        with EpochProgress(opening, config["trainer"]["epochs"]):
            result = ray_runner.fit(config, context, key, one_fit=not in_multirun(), beside=beside, ray_start=ray_start)
    except Exception as e:  # Ray has already shown the worker's traceback above
        opening.tracker()  # the run could not be opened: that is the error to report
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        raise TrainingFailed(lines[-1] if lines else type(e).__name__) from e
    tracker = opening.tracker()
    # Ray Train V2 may leave Result.metrics empty when the last report had no checkpoint (a
    # diverged run): worker 0 logged every epoch to MLflow, so read them back from there.
    metrics = dict(result.metrics or tracker.client.get_run(tracker.run_id).data.metrics)
    tracker.client.set_tag(tracker.run_id, "mlflow.note.content", describe(config, choices, tags, context, metrics, time.perf_counter() - started))
    if metrics.get("diverged"):
        tracker.client.set_tag(tracker.run_id, "raysitter.outcome", "diverged")
        raise Diverged(f"diverged at epoch {int(metrics.get('epoch', 0))}: train/loss became {metrics.get('train/loss')}")
    record_outcome(tracker.client, tracker.run_id, metrics)
    checkpoint = None
    if result.checkpoint:
        from pipelines.runtime.storage import is_remote, uri

        checkpoint = uri(result.checkpoint.path, is_remote(config["trainer"].get("storage_path")))
        tracker.client.set_tag(tracker.run_id, "checkpoint", checkpoint)
        if export:
            with result.checkpoint.as_directory() as local:  # downloaded from object storage when it is there
                log_final_model(tracker, local)
    return metrics, checkpoint


def record_outcome(client: Any, run_id: str, metrics: dict[str, float]) -> None:
    """A run early stopping ended: `raysitter.outcome=early_stopped` and the epoch
    (`raysitter.stopped_epoch`); it still ends FINISHED, with its bundle and plots."""
    from components.tracking.mlflow_utils import set_tag

    if metrics.get("stopped_early"):  # a sweep's trial: the sweep may be closing the same run's tags
        set_tag(client, run_id, "raysitter.outcome", "early_stopped")
        set_tag(client, run_id, "raysitter.stopped_epoch", str(int(metrics.get("epoch", 0))))
        print(f"early stopping: {int(metrics.get('epoch', 0))} epochs trained (no improvement for its patience)", flush=True)


def register(config: dict[str, Any], uri: str, run_id: str) -> None:
    """`tracking.register_as=NAME`: push the finished run's bundle to the zoo."""
    name = config["tracking"].get("register_as")
    if not name:
        return
    from components.zoo.registry import ZooError, push
    from mlflow.tracking import MlflowClient

    alias = config["tracking"].get("register_alias")
    try:
        version = push(MlflowClient(uri, registry_uri=uri), uri, run_id, name, alias)
    except ZooError as e:
        print(f"raysitter: error in `tracking.register_as`: run {run_id} finished (FINISHED in MLflow) but registering "
              f"it as {name!r} failed: {e}. Fix: push it by hand with `raysitter zoo push {run_id} --name NAME`.",
              file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    print(f"zoo          {version.name}/{version.version}" + (f" (alias {alias})" if alias else ""), flush=True)


class TrainingFailed(RuntimeError):
    pass


class Diverged(TrainingFailed):
    """The loss stopped being finite; the run ends FAILED with raysitter.outcome=diverged."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: the MLflow run is KILLED, Ray Train's checkpoints stay for `resume=`."""

    def __init__(self, name: str, pipeline: str) -> None:
        super().__init__(name)
        self.name, self.pipeline = name, pipeline


def print_summary(m: dict[str, float], tracker: RunTracker, checkpoint: str | None, seconds: float) -> None:
    line = "─" * 72
    print(line)
    print(f"finished in {seconds:.1f} s   val/acc {m.get('val/acc', float('nan')):.4f}   test/acc {m.get('test/acc', float('nan')):.4f}")
    for prefix in ("ema", "polyak", "snapshots"):
        if f"{prefix}/test/acc" in m:
            print(f"{prefix:<12} val/acc {m[f'{prefix}/val/acc']:.4f}   test/acc {m[f'{prefix}/test/acc']:.4f}   "
                  f"(gain over the single model {m[f'{prefix}/gain_test_acc']:+.4f})")
    if "best/epoch" in m and int(m["best/epoch"]) != int(m.get("epoch", 0)):
        print(f"best epoch   {int(m['best/epoch'])}   test/acc {m.get('best/test/acc', float('nan')):.4f}")
    print(f"MLflow run   {tracker.run_id}  ({tracker.shown})")
    if checkpoint:
        print(f"checkpoint   {checkpoint}")
    print(f"open the UI  {tracker.ui_hint()}")
    print(line, flush=True)


def stopping() -> None:
    """An interrupted command on its way out (not a multirun job: its launcher goes on with the
    others): Ctrl-C pressed again must not cut short Ray's shutdown of its processes."""
    if not in_multirun():
        ignore_stops()


def run_cli(cfg: DictConfig, pipeline: str = "train", adjust: Any = None) -> float:
    """`train` with the command line's exits: 1 for a failed or diverged run, 130 when
    interrupted; returns val/acc (what a Hydra sweeper optimises)."""
    try:
        metrics = train(cfg, pipeline, adjust)
    except Diverged as e:
        print(f"raysitter {pipeline}: {e}. The MLflow run is marked FAILED (raysitter.outcome=diverged). "
              "Fix: lower optimizer.lr (raysitter check suggests a range).", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except TrainingFailed as e:
        print(f"raysitter {pipeline}: training failed: {e}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except Interrupted as e:
        stopping()
        print(f"raysitter {pipeline}: interrupted; the MLflow run is marked KILLED. Continue it from its last checkpoint "
              f"with: {resume.command(e.pipeline, e.name)}", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        stopping()
        print(f"raysitter {pipeline}: interrupted", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    return float(metrics.get("val/acc", 0.0))
