"""Checks a composed config before anything starts, and resolves it to a plain dict.

Every failure is a `UserError` naming the key and the fix; nothing has been written yet.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
import os
from pathlib import Path
import sys
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue
import torch

from components.data import DataNotFoundError
from components.search import get_dotted
from components.tracking import TrackingUnreachableError, check_reachable, default_tracking_uri, flatten
from pipelines.runtime import build
from pipelines.runtime.context import RunContext
from pipelines.runtime.errors import UserError
from pipelines.runtime.frozen import thaw
from pipelines.runtime.storage import not_a_folder


def resolve(cfg: DictConfig) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except MissingMandatoryValue as e:
        key = e.full_key
        raise UserError(key, "has no value and this configuration needs one.", f"pass {key}=VALUE on the command line.") from None
    except InterpolationResolutionError as e:
        raise UserError(e.full_key or "config", f"cannot be resolved ({e.msg}).", "correct the interpolation or override the key.") from None


def require(config: dict, key: str, ok: bool, problem: str, fix: str) -> None:
    if not ok:
        raise UserError(key, f"{problem} (got {get_dotted(config, key)!r}).", fix)


def check_numbers(config: dict) -> None:
    t = config["trainer"]
    lr = config["optimizer"].get("lr")
    require(config, "optimizer.lr", isinstance(lr, (int, float)) and lr > 0, "the learning rate must be a positive number", "pass e.g. optimizer.lr=1e-3.")
    for key in ("epochs", "num_workers", "batch_size"):
        v = t[key]
        require(config, f"trainer.{key}", isinstance(v, int) and not isinstance(v, bool) and v >= 1, "must be a whole number ≥ 1", f"pass e.g. trainer.{key}={ {'epochs': 10, 'num_workers': 1, 'batch_size': 128}[key] }.")
    require(
        config,
        "trainer.batch_size",
        t["batch_size"] % t["num_workers"] == 0,
        f"the global batch size must divide evenly over trainer.num_workers={t['num_workers']} workers",
        f"pick a multiple of {t['num_workers']}, e.g. trainer.batch_size={t['num_workers'] * max(1, t['batch_size'] // t['num_workers'])}.",
    )
    strategies = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
    require(config, "trainer.placement_strategy", t.get("placement_strategy", "PACK") in strategies,
            f"must be one of {', '.join(strategies)}", "pass e.g. trainer.placement_strategy=SPREAD (one worker per node where possible).")
    interval = config["scheduler"].get("interval", "epoch")
    require(config, "scheduler.interval", interval in ("epoch", "step"), "must be 'epoch' or 'step'", "pass scheduler.interval=epoch or scheduler.interval=step.")
    if t["num_workers"] > 1 and (build.is_full_batch(config["optimizer"]) or "LBFGS" in str(config["optimizer"].get("_target_"))):
        raise UserError(
            "trainer.num_workers",
            f"is {t['num_workers']}, but {config['optimizer']['_target_']} runs full-batch steps whose closure "
            "re-evaluates the loss a data-dependent number of times; DDP workers would fall out of step.",
            "pass trainer.num_workers=1 with this optimizer (L-BFGS suits small, full-batch problems), or choose a first-order optimizer.",
        )
    require(config, "trainer.precision", t.get("precision", "fp32") in ("fp32", "bf16"), "must be fp32 or bf16", "pass trainer.precision=bf16 (GPU) or fp32.")
    if t["use_gpu"] and t.get("address") in (None, "", "local") and not torch.cuda.is_available():
        print("raysitter: trainer.use_gpu=true but this machine has no CUDA GPU (and no trainer.address of a cluster "
              "with GPUs was given): running on the CPU instead, with gloo; bf16 and channels_last apply only on a GPU, "
              "so results equal a CPU run's.", file=sys.stderr, flush=True)
        t["use_gpu"] = False
    elif not t["use_gpu"] and (t.get("precision") == "bf16" or t.get("channels_last")):
        print("raysitter: trainer.precision=bf16 and trainer.channels_last apply on GPUs only (trainer.use_gpu=true or "
              "trainer=gpu); this CPU run uses fp32 and the default memory layout.", file=sys.stderr, flush=True)


def check_ray_address(config: dict) -> None:
    """A Ray given by its address (`trainer.address`, or RAY_ADDRESS through it) answers there.
    Ray itself would go on retrying an address where nothing listens, printing a warning every
    few seconds, and never give up."""
    import socket

    address = config["trainer"].get("address")
    if not address or str(address) in ("auto", "local") or "://" in str(address):
        return  # Ray's own lookup, a Ray of the command's own, or a Ray client / job server
    host, _, port = str(address).rpartition(":")
    why = "no Ray answers there"
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=3):
            pass
        if speaks_grpc(f"{host or '127.0.0.1'}:{int(port)}"):
            return
        why = "something answers there that is not a Ray head (its GCS speaks gRPC; a dashboard's http://HOST:8265 is for raysitter submit)"
    except (OSError, ValueError):
        pass
    given = " (from RAY_ADDRESS)" if os.environ.get("RAY_ADDRESS") == str(address) else ""
    raise UserError(
        "trainer.address",
        f"is {address}{given}, but {why}.",
        "start that Ray (ray start --head, or cluster/local/start.sh for a local cluster), give the head's GCS "
        "address (host:6379 unless started with another --port), or pass trainer.address=local (RAY_ADDRESS=local) "
        "for a Ray of this command's own.",
    )


def check_fits_this_machine(config: dict) -> None:
    """A Ray this command starts itself is this machine: a worker group needing more CPUs or
    GPUs than it has would wait for them for ever (Ray Train gives up on the group every 60 s,
    prints a traceback and asks again). A Ray given by address, found running, or joined
    already is left to decide (a cluster's autoscaler may add nodes)."""
    t = config["trainer"]
    if t.get("address") not in (None, "", "local") or "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return
    per = {k: float(v) for k, v in dict(t.get("resources_per_worker") or {}).items()}
    n, cpu = int(t["num_workers"]), per.get("CPU", 1.0)
    gpu = per.get("GPU", 1.0 if t["use_gpu"] and torch.cuda.device_count() else 0.0)  # none here: the run falls back to the CPU
    search = config.get("search") or {}
    trial = float(search.get("trial_cpus") or 0)  # a sweep's trial: its driver's CPUs, then its workers' (search.worker_cpus)
    cpu = float(search.get("worker_cpus") or cpu) if "trial_cpus" in search else cpu
    if trial + n * cpu <= 1 and not gpu:  # one CPU: every machine has it
        return
    from pipelines.runtime.ray_runner import running_local_ray

    if not t.get("address") and running_local_ray() is not None:
        return
    import ray._private.utils

    cpus, gpus = float(ray._private.utils.get_num_cpus()), float(torch.cuda.device_count())
    if trial and trial + n * cpu > cpus:
        raise UserError("search.trial_cpus", f"is {trial:g}: with {n} worker(s) × {cpu:g} CPU (search.worker_cpus) a trial asks for "
                        f"{trial + n * cpu:g} CPUs, but the Ray this command starts has this machine's {cpus:g}: no trial would ever start.",
                        f"lower search.trial_cpus or search.worker_cpus (or trainer.num_workers) until a trial fits in {cpus:g}, or run "
                        "the sweep on a cluster with room for it (trainer.address=HOST:6379).")
    for what, each, have in (("CPU", cpu, cpus), ("GPU", gpu, gpus)):
        need = n * each
        if need > have:
            key, fix = ("trainer.num_workers", f"pass trainer.num_workers={int(have // each)}") if have >= each else \
                (f"trainer.resources_per_worker.{what}", f"pass trainer.resources_per_worker.{what}={have:g} or less")
            raise UserError(key, f"asks for {n} worker(s) × {each:g} {what} = {need:g} {what}s, but the Ray this command starts "
                            f"has this machine's {have:g}: the worker group would wait for them for ever.",
                            f"{fix}, or run it on a cluster with room for it (trainer.address=HOST:6379, or raysitter submit).")


def speaks_grpc(address: str, timeout_s: float = 3.0) -> bool:
    """Whether a gRPC server (as a Ray head's GCS is) completes the HTTP/2 handshake at
    `address`: Ray waits for ever on an address where some other server answers."""
    import grpc

    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()


def check_data(config: dict) -> tuple[tuple[int, ...], int]:
    """The dataset exists; returns its (input shape, number of classes)."""
    data = config["data"]
    if data.get("root") is not None:
        data["root"] = str(Path(os.path.expanduser(str(data["root"]))).resolve())
    try:
        return build.data_source(data).describe()
    except Exception as e:  # Hydra wraps the constructor's error: missing data, unknown keys, bad values
        cause = e.__cause__ or e
        if isinstance(cause, DataNotFoundError):
            raise UserError("data.root", f"{str(cause).rstrip('.')}.", "point data.root at the folder, or choose another dataset (data=digits).") from None
        raise UserError("data", f"the dataset cannot be built: {str(cause).rstrip('.')}.", "check the data.* keys against conf/data/ (raysitter train --cfg job shows them).") from None


def split_sizes(config: dict) -> tuple[int, int, int] | None:
    """(train, val, test) image counts, checking what only the data shows: an image folder's
    classes and a sample of its files (ImageFolderSource.scan). None where counting would mean
    reading a large dataset (CIFAR-10: its fixed 50000/10000 split is checked by its reader)."""
    data = config["data"]
    source = build.data_source(data)
    try:
        if hasattr(source, "scan"):
            n = sum(source.scan().values())
            n_val, n_test = round(n * data["val_fraction"]), round(n * data["test_fraction"])
            return n - n_val - n_test, n_val, n_test
        if "Digits" in str(data["_target_"]) or "Synthetic" in str(data["_target_"]):
            splits = build.load_splits(data, config["seed"])
            return len(splits.train), len(splits.val), len(splits.test)
    except DataNotFoundError as e:
        raise UserError("data.root", f"{str(e).rstrip('.')}.", "fix the folder (one sub-folder of images per class, at least two classes), or point data.root at another.") from None
    return None


def check_splits(config: dict) -> tuple[int, int, int] | None:
    sizes = split_sizes(config)
    if sizes is None:
        return None
    for key, n, name in (("data.val_fraction", sizes[1], "validation"), ("data.test_fraction", sizes[2], "test"), ("data", sizes[0], "training")):
        if n == 0:
            fraction = config["data"].get(key.split(".")[-1]) if "." in key else None
            raise UserError(key, f"leaves no {name} images ({sum(sizes)} images in all{f', × {fraction}' if fraction is not None else ''} rounds to 0).",
                            f"raise {key} so that the {name} split gets images, or use more data." if fraction is not None else "use more data.")
    return sizes


def has_batch_norm(net: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


def check_last_batch(config: dict, net: torch.nn.Module, input_shape: tuple[int, ...], n_train: int) -> None:
    """A BatchNorm layer cannot normalise a batch of one in training: refuse a batch size that
    would leave each worker's last batch a single image (and say which sizes work)."""
    t = config["trainer"]
    if not has_batch_norm(net) or build.is_full_batch(config["optimizer"]):
        return
    workers = t["num_workers"]
    per_worker, batch = n_train // workers, t["batch_size"] // workers
    if per_worker % batch != 1:
        return
    try:
        net.train()
        net(torch.rand(1, *input_shape))
        return  # this model copes (e.g. BatchNorm2d over several pixels)
    except (ValueError, RuntimeError):
        pass
    fits = [b * workers for b in range(max(2, batch - 16), batch + 17) if b != batch and per_worker % b != 1 and b <= per_worker]
    near = min(fits, key=lambda b: abs(b - t["batch_size"])) if fits else None
    raise UserError(
        "trainer.batch_size",
        f"is {t['batch_size']}: each of the {workers} worker(s) trains on {per_worker} images in batches of {batch}, "
        "so its last batch is one image, and a BatchNorm layer cannot normalise a batch of one.",
        f"pass trainer.batch_size={near}." if near else "change trainer.batch_size or the data size, or turn batch norm off.",
    )


@contextmanager
def blame(group: str) -> Iterator[None]:
    """Turns any error building `group` into a UserError naming it."""
    try:
        yield
    except Exception as e:
        cause = e.__cause__ or e
        raise UserError(
            group,
            f"cannot be built: {type(cause).__name__}: {cause}.",
            f"check the {group}.* keys (raysitter train --cfg job shows them; conf/{group}/ lists the choices).",
        ) from None


@contextmanager
def without_compiler_import() -> Iterator[None]:
    """Building an optimizer imports torch's compiler (torch._dynamo, ≈ 1 s here): its
    `add_param_group` is wrapped, for torch.compile's sake, by a decorator that imports the
    compiler on first call and keeps what it made in the function's `__dynamo_disable`. This
    process only checks that the optimizer builds and compiles nothing, so for that check the
    decorator is handed the plain function; afterwards it is as it was. (Should torch change
    the decorator, the attribute is ignored and the import merely happens.)"""
    plain = getattr(torch.optim.Optimizer.add_param_group, "__wrapped__", None)
    if plain is None or "torch._dynamo" in sys.modules or hasattr(plain, "__dynamo_disable"):
        yield
        return
    setattr(plain, "__dynamo_disable", plain)
    try:
        yield
    finally:
        delattr(plain, "__dynamo_disable")


def check_components(config: dict, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
    """Builds model, optimizer, scheduler and augmentation once on a tiny batch, so a bad value
    fails here (exit 2) instead of as a traceback inside a Ray worker."""
    x = torch.rand(2, *input_shape)
    with blame("model"):
        net = build.model(config["model"], input_shape, num_classes)
    with blame("init"):
        if config.get("init"):
            build.make(config["init"])(net)
    with blame("model"):
        net.train()
        net(x).sum().backward()
    with blame("optimizer"), without_compiler_import():
        opt = build.optimizer(config["optimizer"], net)
    with blame("scheduler"), without_compiler_import():
        build.scheduler(config["scheduler"], opt)
    with blame("augment"):
        build.augment(config["augment"])(x)
    with blame("preprocess"):
        if config["preprocess"].get("_target_"):  # fine-tuning reuses the zoo bundle's statistics instead
            build.normalizer(config["preprocess"], x)
    with blame("ensembling"):
        check_ensembling(config)
    with blame("diagnostics"):
        build.diagnostics(config.get("diagnostics"))
    with blame("early_stopping"):
        build.early_stopping(config.get("early_stopping"))
    return net


CYCLIC_SCHEDULES = ("CyclicLR", "CosineAnnealingWarmRestarts")


def check_ensembling(config: dict) -> None:
    node = config.get("ensembling") or {}
    if node.get("_target_"):
        build.make(node)
    if "SnapshotEnsemble" in str(node.get("_target_")) and not any(s in str(config["scheduler"].get("_target_")) for s in CYCLIC_SCHEDULES):
        raise UserError(
            "ensembling",
            f"is snapshots, which keeps the weights at the end of each learning-rate cycle, but the scheduler "
            f"{config['scheduler'].get('_target_')} has no cycles (the ensemble would hold only the final weights).",
            "pass scheduler=cyclic or scheduler=cosine_restarts with ensembling=snapshots.",
        )


def check_tracking(config: dict, must_exist: bool = False) -> None:
    """The store is a database or server that answers; nothing is created here. `must_exist`:
    a command that reads runs or the zoo needs a store that holds them already."""
    tracking = config["tracking"]
    check_output_dir(config["output_dir"])  # runs, checkpoints and (unless tracking.uri) the store go there
    tracking["uri"] = tracking.get("uri") or default_tracking_uri(config["output_dir"])
    uri = tracking["uri"]
    try:
        check_reachable(uri)
    except TrackingUnreachableError as e:
        raise UserError(
            "tracking.uri",
            f"{e}.",
            "start the server (raysitter ui, or mlflow server --host 127.0.0.1 --port 5000) or pass another "
            "tracking.uri (sqlite:///PATH/mlflow.db or http://HOST:PORT); leave it unset (and unset MLFLOW_TRACKING_URI) "
            "for the embedded local store.",
        ) from None
    if must_exist and uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise UserError("tracking.uri", f"there is no MLflow store at {uri} yet, so it holds no runs or zoo models.",
                        "train something first (raysitter train), or set RAYSITTER_OUTPUT_DIR / tracking.uri to the store your runs went to.")


def check_output_dir(output_dir: str) -> None:
    """OUTPUT_DIR (`output_dir`, from RAYSITTER_OUTPUT_DIR) is a folder, or can be made one (no
    file where it or a folder above it should be); nothing is created here."""
    path = Path(os.path.expanduser(str(output_dir))).absolute()
    why = not_a_folder(path)
    if why:
        raise UserError("output_dir", f"{path} (RAYSITTER_OUTPUT_DIR or output_dir=) {why}; runs, checkpoints and the embedded "
                        "MLflow store go there.", "point RAYSITTER_OUTPUT_DIR (or output_dir=) at a folder you can write, or leave "
                        "it unset for ./outputs.")


def check_storage(config: dict) -> None:
    """`trainer.storage_path`: an address that reads as one and a bucket that answers
    (`storage.check`), or a folder made absolute, one that can be made."""
    from pipelines.runtime import storage

    storage.check(config)  # before the path is made absolute: "s3:/bucket" would become a folder
    trainer = config["trainer"]
    path = trainer.get("storage_path")
    if path and "://" not in str(path):
        trainer["storage_path"] = absolute(path)
        why = not_a_folder(Path(trainer["storage_path"]), writable=False)  # a cluster's mount may be writable only where Ray Train writes
        if why:
            raise UserError("trainer.storage_path", f"{trainer['storage_path']} {why}; Ray Train keeps the run's checkpoints there.",
                            "pass a folder you can write (one every node can reach, on a cluster) or s3://BUCKET/PREFIX, or leave "
                            "it unset for OUTPUT_DIR/ray_results.")


def absolute(path: str) -> str:
    return str(Path(os.path.expanduser(str(path))).resolve())


def declared() -> dict[str, Any]:
    """What the running Hydra app's config files declare (empty outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    from pipelines.runtime.app import declared_defaults

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    return declared_defaults(str(hc.job.config_name), dict(hc.runtime.choices))


def check_values(config: dict[str, Any]) -> None:
    """Declared types, documented ranges and the rules across keys (pipelines.runtime.schema)."""
    from pipelines.runtime import schema

    schema.check(config, declared())


def compose_run(config_name: str, overrides: list[str]) -> dict[str, Any]:
    """The one way to make a run's config: compose `config_name` from this run's own overrides,
    then resolve it, so interpolations (`${optimizer.lr}`, `${trainer.epochs}`) follow this run's
    values; the result is read-only (pipelines.runtime.frozen). Inside a running Hydra app its
    config search path is used; outside, conf/'s."""
    from hydra import compose

    from pipelines.runtime.app import hydra_context, rewrite_group_overrides
    from pipelines.runtime.frozen import freeze

    with hydra_context():
        return freeze(resolve(compose(config_name=config_name, overrides=rewrite_group_overrides(overrides))))


def check_command(config_name: str, overrides: list[str]) -> None:
    """What can be checked of a command line on any machine (composition, declared types,
    ranges and rules), without its data or store: `raysitter submit` runs this before sending a
    job to a cluster. Raises UserError."""
    from hydra import compose

    from pipelines.runtime.app import check_overrides, hydra_context, rewrite_group_overrides

    overrides = rewrite_group_overrides(overrides)
    check_overrides(config_name, overrides)
    with hydra_context():
        check_composed(compose(config_name=config_name, overrides=overrides, return_hydra_config=True))


def check_composed(cfg: DictConfig) -> None:
    """`check_command` for a config Hydra has composed with its `hydra` node (a multirun job)."""
    from pipelines.runtime import schema
    from pipelines.runtime.app import declared_defaults

    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    config_name = str(cfg.hydra.job.config_name)
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.pop("hydra")
    schema.check(resolve(cfg), declared_defaults(config_name, choices))


@dataclass(frozen=True)
class Prepared:
    """A checked run: its read-only config (composed from `overrides`), the model it describes
    (built once on the driver) and what the driver decided beside the config."""

    config: dict[str, Any]
    net: torch.nn.Module
    overrides: list[str]  # the complete override list: the command line's, then `pins`
    pins: list[str]  # what this machine fixed: absolute paths, the store, the CPU fallback, a zoo model
    context: RunContext
    sizes: tuple[int, int, int] | None = None  # (train, val, test) images, where counting is cheap
    num_classes: int | None = None


PINNED = ("output_dir", "data.root", "tracking.uri", "trainer.use_gpu", "trainer.storage_path")  # what the checks may decide


def pin(key: str, value: Any) -> str:
    """`key=value` as an override that Hydra reads back as exactly `value`."""
    return f"{key}={hydra_value(value)}"


def hydra_value(value: Any) -> str:
    """A value in Hydra's override grammar: strings quoted, dicts and lists inline."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, float):
        return repr(value)
    from pipelines.runtime.schema import as_override

    return as_override(value)


def running_command() -> tuple[str, list[str]]:
    """The running Hydra app's config name and this job's override list."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return str(hc.job.config_name), list(hc.overrides.task)


def prepare(cfg: DictConfig, adjust: Callable[[dict], tuple[list[str], RunContext]] | None = None,
            command: tuple[str, list[str]] | None = None) -> Prepared:
    """Checks a command's config, then makes the run's config the one way there is: composed
    from the command's overrides plus what the checks pinned (absolute `output_dir` and
    `data.root`, the tracking store, `trainer.use_gpu=false` on a machine without a GPU), then
    resolved and read-only. `adjust(draft)` runs once the tracking store is known (fine-tuning
    pulls its zoo bundle there) and returns overrides of its own and the run's context.
    `command` = (config name, overrides); inside a Hydra app, the running one's."""
    config_name, overrides = command or running_command()
    draft = resolve(cfg)
    before = {key: get_dotted(draft, key) for key in PINNED}
    check_values(draft)
    draft["output_dir"] = absolute(draft["output_dir"])
    check_storage(draft)
    check_numbers(draft)
    check_ray_address(draft)
    check_fits_this_machine(draft)
    input_shape, num_classes = check_data(draft)
    sizes = check_splits(draft)
    adopted, context = [], RunContext()
    if adjust is not None:
        check_tracking(draft, must_exist=True)
        adopted, context = adjust(draft)
    check_tracking(draft)
    replaced = {o[1:] for o in adopted if o.startswith("~")}  # sections `adjust` takes from elsewhere (a zoo model)
    section = lambda o: o.lstrip("+~").split("=")[0].replace("/", ".").split(".")[0]  # noqa: E731
    clash = [o for o in overrides if section(o) in replaced]
    if clash:
        raise UserError(", ".join(sorted({section(o) for o in clash})), f"comes from the zoo model when fine-tuning, so {' '.join(clash)} would not apply.",
                        "leave those overrides out (to change the architecture, train a new model and register it).")
    after = {key: get_dotted(draft, key) for key in PINNED}
    pins = [pin(key, after[key]) for key in PINNED if after[key] != before[key]] + adopted
    config = compose_run(config_name, [*overrides, *pins])
    if not adopted and thaw(config) != draft:  # the checks' edits and the pins must agree exactly
        checked, composed = flatten(draft), flatten(thaw(config))
        changed = sorted(k for k in checked.keys() | composed.keys() if checked.get(k) != composed.get(k))
        raise RuntimeError(f"internal error: the composed run config differs from the checked one at {changed}")
    net = check_components(config, input_shape, num_classes)
    if sizes:
        check_last_batch(config, net, input_shape, sizes[0])
    return Prepared(config, net, [*overrides, *pins], pins, context, sizes, num_classes)


def prepare_command(config_name: str, overrides: list[str], adjust: Any = None) -> Prepared:
    """`prepare` for a command line outside a running Hydra app (tests, tools)."""
    from hydra import compose

    from pipelines.runtime.app import hydra_context, rewrite_group_overrides

    overrides = rewrite_group_overrides(overrides)
    with hydra_context():
        return prepare(compose(config_name=config_name, overrides=overrides), adjust, (config_name, overrides))
