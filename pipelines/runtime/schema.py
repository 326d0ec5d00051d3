"""Declared types and ranges of raysitter's config options, checked on the resolved config
before anything starts (no Ray, no MLflow run, no output folder).

Two declarations, one check:
1. Each option file declares its keys' types by its defaults (conf/optimizer/adam.yaml's
   `lr: 1.0e-3` makes `optimizer.lr` a number): a value of another type is refused. A bool or a
   string is not a number; a whole number is a fine float; a list stays a list.
2. `SPEC` below: the ranges and choices of the keys raysitter documents, whatever option
   provides them (`optimizer.momentum` is checked for SGD and RMSprop alike).
Every failure is a UserError naming the key and a value that would work.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import math
import re
from typing import Any

from pipelines.runtime.errors import UserError

SAFE_NAME = re.compile(r"^[A-Za-z0-9][\w.\-=+,@:\[\]]*$")  # run, sweep and resume names: no '/', quotes or spaces
ZOO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ZOO_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9][A-Za-z0-9_.-]*|/[0-9]+)?$")
METRICS = ("val/acc", "val/loss", "train/acc", "train/loss")  # what every epoch reports (sweeps rank by one)


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a group of keys"
    return "empty (null)" if value is None else type(value).__name__


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Number:
    """A finite number (a whole one when `whole`) within the given bounds."""

    example: Any
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    whole: bool = False
    optional: bool = False

    def problem(self, v: Any) -> str | None:
        if v is None and self.optional:
            return None
        ok = is_number(v) and (not self.whole or isinstance(v, int))
        ok = ok and (self.gt is None or v > self.gt) and (self.ge is None or v >= self.ge)
        ok = ok and (self.lt is None or v < self.lt) and (self.le is None or v <= self.le)
        return None if ok else f"must be {self.describe()}"

    def describe(self) -> str:
        bounds = [f"> {self.gt}" if self.gt is not None else "", f"≥ {self.ge}" if self.ge is not None else "",
                  f"< {self.lt}" if self.lt is not None else "", f"≤ {self.le}" if self.le is not None else ""]
        text = ("a whole number" if self.whole else "a number") + (" " + " and ".join(b for b in bounds if b) if any(bounds) else "")
        return text + (" or null" if self.optional else "")


def Whole(example: Any, **bounds: Any) -> Number:  # noqa: N802 (reads as a type)
    return Number(example, whole=True, **bounds)


@dataclass(frozen=True)
class OneOf:
    choices: tuple[Any, ...]
    optional: bool = False

    @property
    def example(self) -> Any:
        return self.choices[0]

    def problem(self, v: Any) -> str | None:
        if (v is None and self.optional) or (v in self.choices and type(v) in {type(c) for c in self.choices}):
            return None
        return f"must be one of {', '.join(str(c) for c in self.choices)}" + (" (or null)" if self.optional else "")


@dataclass(frozen=True)
class Flag:
    example: Any = "true"

    def problem(self, v: Any) -> str | None:
        return None if isinstance(v, bool) else "must be true or false"


@dataclass(frozen=True)
class Text:
    example: Any
    pattern: re.Pattern | None = None
    optional: bool = False
    what: str = "non-empty text"

    def problem(self, v: Any) -> str | None:
        if v is None and self.optional:
            return None
        if isinstance(v, str) and v.strip() and (self.pattern is None or self.pattern.match(v)):
            return None
        return f"must be {self.what}" + (" (or null)" if self.optional else "")


@dataclass(frozen=True)
class Numbers:
    """A list of numbers, each passing `each`, of `length` items (any when None)."""

    example: Any
    each: Number
    length: int | None = None
    nonempty: bool = False

    def problem(self, v: Any) -> str | None:
        ok = isinstance(v, list) and (self.length is None or len(v) == self.length) and (not self.nonempty or v)
        if ok and all(self.each.problem(x) is None for x in v):
            return None
        items = "whole numbers" if self.each.whole else "numbers"
        bounds = self.each.describe().removeprefix("a whole number").removeprefix("a number").strip()
        size = f"{self.length} " if self.length else "one or more " if self.nonempty else ""
        return f"must be a list of {size}{items}" + (f", each {bounds}" if bounds else "")


FRACTION = Number(0.15, gt=0, lt=1)
PROBABILITY = Number(0.5, ge=0, le=1)
DROP = Number(0.1, ge=0, lt=1)

SPEC: dict[str, Any] = {
    "seed": Whole(0, ge=0),
    # trainer
    "trainer.epochs": Whole(10, ge=1),
    "trainer.batch_size": Whole(128, ge=1),
    "trainer.num_workers": Whole(2, ge=1),
    "trainer.use_gpu": Flag(),
    "trainer.precision": OneOf(("fp32", "bf16")),
    "trainer.channels_last": Flag(),
    "trainer.compile": Flag(),
    "trainer.resources_per_worker.CPU": Number(1, gt=0),
    "trainer.resources_per_worker.GPU": Number(1, ge=0),
    "trainer.placement_strategy": OneOf(("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")),
    "trainer.address": Text("127.0.0.1:6379", re.compile(r"^(auto|local|(ray|https?)://\S+|[\w.\-]+:\d+|\[[0-9A-Fa-f:]+\]:\d+)$"), optional=True,
                            what="a Ray address (host:port, ray://host:10001, auto or local)"),
    "trainer.storage_path": Text("s3://bucket/prefix", optional=True, what="a folder or s3://BUCKET/PREFIX"),
    "trainer.storage_endpoint": Text("http://127.0.0.1:9000", re.compile(r"^https?://[^/\s]+/?$"), optional=True,
                                     what="an S3 endpoint URL (http://HOST:PORT or https://HOST)"),
    "trainer.max_failures": Whole(3, ge=-1),  # -1: restart without limit
    "trainer.checkpoints_to_keep": Whole(2, ge=1),
    "trainer.report_interval_s": Number(0.1, gt=0, le=60),
    "trainer.log_level": OneOf(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    # tracking
    "tracking.experiment": Text("raysitter"),
    "tracking.run_name": Text("baseline", SAFE_NAME, optional=True, what="a name of letters, digits and _ . - = + , @ : [ ] (no spaces, quotes or /)"),
    "tracking.log_model": Flag(),
    "tracking.log_bundle": Flag(),
    "tracking.register_as": Text("digits-mlp", ZOO_NAME, optional=True, what="a zoo name of letters, digits and _ . - (no spaces or quotes)"),
    "tracking.register_alias": Text("champion", ZOO_NAME, optional=True, what="an alias of letters, digits, _ and - (no spaces or quotes)"),
    # data (each key where the chosen dataset has it)
    "data.val_fraction": FRACTION,
    "data.test_fraction": FRACTION,
    "data.split_seed": Whole(0, ge=0, optional=True),
    "data.train_per_class": Whole(10, ge=1, optional=True),
    "data.image_size": Numbers("[32,32]", Whole(32, ge=1), length=2),
    "data.channels": OneOf((3, 1)),
    "data.in_memory": Flag(),
    "data.loader_workers": Whole(2, ge=0),
    "data.num_samples": Whole(2048, ge=10),
    "data.num_classes": Whole(10, ge=2),
    "data.shape": Numbers("[3,32,32]", Whole(32, ge=1), nonempty=True),
    "data.noise": Number(1.0, ge=0),
    "data.data_seed": Whole(1234, ge=0),
    "data.root": Text("/path/to/data"),
    # optimizer
    "optimizer.lr": Number(1e-3, gt=0),
    "optimizer.weight_decay": Number(1e-4, ge=0),
    "optimizer.momentum": Number(0.9, ge=0, lt=1),
    "optimizer.nesterov": Flag(),
    "optimizer.eps": Number(1e-8, gt=0),
    "optimizer.alpha": Number(0.9, ge=0, lt=1),
    "optimizer.betas": Numbers("[0.9,0.999]", Number(0.9, ge=0, lt=1), length=2),
    "optimizer.max_iter": Whole(20, ge=1),
    "optimizer.history_size": Whole(10, ge=1),
    "optimizer.full_batch": Flag(),
    # scheduler
    "scheduler.interval": OneOf(("epoch", "step")),
    "scheduler.step_size": Whole(10, ge=1),
    "scheduler.gamma": Number(0.1, gt=0, le=1),  # step and exponential decay: above 1 the lr would grow every step
    "scheduler.T_max": Whole(20, ge=1),
    "scheduler.T_0": Whole(5, ge=1),
    "scheduler.T_mult": Whole(1, ge=1),
    "scheduler.eta_min": Number(0.0, ge=0),
    "scheduler.base_lr": Number(1e-3, gt=0),
    "scheduler.max_lr": Number(1e-2, gt=0),
    "scheduler.step_size_up": Whole(50, ge=1),
    "scheduler.mode": OneOf(("triangular", "triangular2", "exp_range")),
    "scheduler.decay": Number(0.1, ge=0),
    "scheduler.factor": Number(1.0, gt=0, le=1),
    "scheduler.total_iters": Whole(0, ge=0),
    # model
    "model.hidden": Numbers("[256,256]", Whole(256, ge=1)),
    "model.channels": Numbers("[32,64]", Whole(32, ge=1), nonempty=True),
    "model.widths": Numbers("[16,32,64]", Whole(16, ge=1), nonempty=True),
    "model.convs_per_block": Whole(2, ge=1),
    "model.blocks_per_stage": Whole(2, ge=1),
    "model.batch_norm": Flag(),
    "model.bn_position": OneOf(("pre_activation", "post_activation")),
    "model.pool": OneOf(("max", "fractional")),
    "model.dropout": DROP,
    "model.drop_connect": DROP,
    "model.stochastic_depth": DROP,
    "model.activation.pieces": Whole(2, ge=2),
    # preprocess and augment
    "preprocess.mode": OneOf(("per_channel", "per_dataset", "none")),
    "preprocess.scale": Flag(),
    "augment.p": PROBABILITY,
    "augment.padding": Whole(4, ge=0),
    "augment.degrees": Number(15, ge=0, le=180),
    "augment.translate": Number(0.1, ge=0, lt=1),
    "augment.shear": Number(10, ge=0, lt=90),
    "augment.aspect": Number(1.2, ge=1),
    "augment.scale": Numbers("[0.9,1.1]", Number(1, gt=0), length=2),
    "augment.magnitude": Number(1.0, ge=0),
    "augment.flip": Flag(),
    "augment.brightness": Number(0.4, ge=0, le=1),
    "augment.contrast": Number(0.4, ge=0, le=1),
    "augment.saturation": Number(0.4, ge=0, le=1),
    "augment.hue": Number(0.1, ge=0, le=0.5),
    # ensembling and diagnostics
    "ensembling.mode": OneOf(("ema", "polyak")),
    "ensembling.decay": Number(0.999, gt=0, lt=1),
    "ensembling.start": Number(0.5, ge=0, lt=1),
    "ensembling.export": Flag(),
    "ensembling.keep": Whole(5, ge=1),
    "tracking.best_metric": OneOf(("val/acc", "val/loss", "train/acc", "train/loss")),
    "tracking.best_mode": OneOf(("max", "min")),
    "tracking.bundle_weights": OneOf(("best", "last")),
    "early_stopping.metric": OneOf(("val/loss", "val/acc", "train/loss", "train/acc", "gap/train_val_acc")),
    "early_stopping.mode": OneOf(("min", "max")),
    "early_stopping.patience": Whole(5, ge=1),
    "early_stopping.min_delta": Number(0.0, ge=0),
    "diagnostics.enabled": Flag(),
    "diagnostics.plots": Flag(),
    "diagnostics.every_n_steps": Whole(20, ge=1),
    "diagnostics.ratio_range": Numbers("[1e-5,1e-1]", Number(1e-3, gt=0), length=2),
    "diagnostics.saturation": Number(0.99, gt=0, lt=1),
    "diagnostics.histogram_samples": Whole(4096, ge=1),
    # raysitter tune
    "search.method": OneOf(("random", "grid")),
    "search.grid_points": Whole(3, ge=2),
    "search.metric": OneOf(METRICS),
    "search.mode": OneOf(("max", "min")),
    "search.top_k": Whole(3, ge=1),
    "search.margin": Number(0.25, ge=0),
    "search.scheduler": OneOf(("asha", "none")),
    "search.grace_period": Whole(1, ge=1),
    "search.reduction_factor": Number(2, gt=1),
    "search.max_concurrent": Whole(2, ge=1),
    "search.trial_backend": OneOf(("auto", "train", "function")),
    "search.trial_cpus": Number(0.5, gt=0),
    "search.worker_cpus": Number(0.5, gt=0),
    "sweep_name": Text("lr-sweep", SAFE_NAME, optional=True, what="a name of letters, digits and _ . - = + , @ : [ ] (no spaces, quotes or /)"),
    "preflight": Flag(),
    "force": Flag(),
    "resume": Text("NAME", SAFE_NAME, optional=True, what="the name raysitter printed (letters, digits and _ . - = + , @ : [ ]; no spaces, quotes or /)"),
    # raysitter check
    "check.examples": Whole(512, ge=2),
    "check.initial_loss_tolerance": Number(0.15, gt=0),
    "check.regularization_strength": Number(1e-2, gt=0),
    "check.overfit_examples": Whole(20, ge=1),
    "check.overfit_steps": Whole(300, ge=1),
    "check.overfit_target_loss": Number(0.05, gt=0),
    "check.lr_range.low": Number(1e-6, gt=0),
    "check.lr_range.high": Number(10.0, gt=0),
    "check.lr_range.points": Whole(15, ge=2),
    "check.lr_range.steps": Whole(20, ge=1),
    # raysitter finetune and ensemble
    # finetune's `zoo: ???` must be given (refused as missing before this); evaluate's is one of three
    "zoo": Text("digits-mlp@champion", ZOO_REF, optional=True, what="a zoo reference NAME, NAME@ALIAS or NAME/VERSION (letters, digits and _ . -)"),
    "finetune.strategy": OneOf(("head", "top", "full")),
    "finetune.lr_scale": Number(0.1, gt=0, le=1),
    "sweep": Text("tune-lr_wd-20261128-101500", SAFE_NAME, optional=True, what="a sweep name as raysitter tune printed it"),
    "top_k": Whole(3, ge=1),
    "metric": OneOf(METRICS),
    # raysitter study (top-level keys of conf/study/*.yaml)
    "budget": Whole(9, ge=1),
    "repeats": Whole(3, ge=1),
    "epochs": Whole(3, ge=1),
    "depth": Whole(10, ge=1),
    "width": Whole(500, ge=1),
    "num_samples": Whole(1000, ge=2),
    "seeds": Numbers("[0,1,2]", Whole(0, ge=0), nonempty=True),
}


def get(config: dict[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def as_override(value: Any) -> str:
    """A value as it is typed on the command line (`true`, `null`, `[1,2]`, `'text'`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(as_override(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) and not value else str(value)


def refuse(key: str, problem: str, value: Any, example: Any) -> UserError:
    shown = repr(value) if isinstance(value, str) else as_override(value)
    return UserError(key, f"{problem} (got {shown}).", f"pass e.g. {key}={as_override(example)}.")


def check_declared(config: dict[str, Any], declared: dict[str, Any], prefix: str = "") -> None:
    """Every value has the type its option file's default declares."""
    for key, default in declared.items():
        if key == "defaults" or key not in config or (isinstance(default, str) and ("${" in default or default == "???")):
            continue
        value, full = config[key], f"{prefix}{key}"
        if default is None or value is None and full in SPEC:
            continue
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise refuse(full, "must be a group of keys, as in its config file", value, "{…}")
            check_declared(value, default, f"{full}.")
            continue
        expected = "a number" if is_number(default) else kind(default)
        if value is None and isinstance(default, (bool, int, float, str)):
            raise refuse(full, f"must be {expected}, like its default {default!r}", value, default)
        if expected != kind(value) and not (is_number(default) and isinstance(value, float) and not math.isfinite(value)):
            raise refuse(full, f"must be {expected}, like its default {default!r}", value, default)
        if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float) and not value.is_integer() \
                and full in SPEC and getattr(SPEC[full], "whole", False):
            raise refuse(full, "must be a whole number", value, default)


OWN_SECTIONS = ("trainer", "tracking", "search", "check", "finetune")  # read by raysitter itself, not passed to a class


def check_known_keys(config: dict[str, Any], declared: dict[str, Any]) -> None:
    """A key raysitter's own sections do not have (`+trainer.epoch=3`) would be ignored: refused."""
    for section in OWN_SECTIONS:
        ours, given = declared.get(section), config.get(section)
        if isinstance(ours, dict) and isinstance(given, dict):
            for key in given:
                if key not in ours:
                    raise UserError(f"{section}.{key}", "is not a setting raysitter reads, so it would be ignored.",
                                    f"remove it; the {section}.* settings are {', '.join(sorted(ours))} (docs/SETTINGS.md).")


def check_spec(config: dict[str, Any]) -> None:
    for key, spec in SPEC.items():
        present, value = get(config, key)
        if present:
            problem = spec.problem(value)
            if problem:
                raise refuse(key, problem, value, spec.example)


def check(config: dict[str, Any], declared: dict[str, Any], extra: tuple[Callable[[dict[str, Any]], None], ...] = ()) -> None:
    check_declared(config, declared)
    check_known_keys(config, declared)
    check_spec(config)
    for rule in (*RULES, *extra):
        rule(config)


# Rules across keys -------------------------------------------------------------------------

def fractions_leave_training_data(config: dict[str, Any]) -> None:
    data = config.get("data") or {}
    val, test = data.get("val_fraction", 0), data.get("test_fraction", 0) or 0
    if is_number(val) and is_number(test) and val + test >= 0.9:
        raise UserError("data.val_fraction", f"and data.test_fraction add up to {val + test:g}, which leaves "
                        f"{max(0.0, 1 - val - test):.0%} of the images to train on.", "keep their sum at most 0.5, e.g. data.val_fraction=0.15 data.test_fraction=0.15.")


def digits_classes(config: dict[str, Any]) -> None:
    present, classes = get(config, "data.classes")
    if not present or classes is None:
        return
    if not isinstance(classes, list) or any(not isinstance(c, int) or isinstance(c, bool) or not 0 <= c <= 9 for c in classes):
        raise refuse("data.classes", "must be a list of digits 0…9", classes, "[0,1,2,3,4]")
    if len(set(classes)) < 2 or len(set(classes)) != len(classes):
        raise UserError("data.classes", f"must name at least two different digits, each once (got {classes}): a classifier "
                        "of one class learns nothing and reports 100 %.", "pass e.g. data.classes=[0,1,2,3,4] (or null for all ten).")


def lr_range_is_a_range(config: dict[str, Any]) -> None:
    r = (config.get("check") or {}).get("lr_range") or {}
    if is_number(r.get("low")) and is_number(r.get("high")) and r["low"] >= r["high"]:
        raise UserError("check.lr_range.high", f"must be above check.lr_range.low (got low {r['low']}, high {r['high']}).",
                        "pass e.g. check.lr_range.low=1e-6 check.lr_range.high=10.")
    c = config.get("check") or {}
    if isinstance(c.get("overfit_examples"), int) and isinstance(c.get("examples"), int) and c["overfit_examples"] > c["examples"]:
        raise UserError("check.overfit_examples", f"is {c['overfit_examples']}, more than check.examples={c['examples']} the checks draw.",
                        f"pass check.overfit_examples={min(20, c['examples'])} or raise check.examples.")


def registered_runs_keep_a_bundle(config: dict[str, Any]) -> None:
    """`tracking.register_as` pushes the run's bundle to the zoo: without one the whole run
    trained, then the registration failed (exit 1)."""
    tracking = config.get("tracking") or {}
    if tracking.get("register_as") and tracking.get("log_bundle") is False:
        raise UserError("tracking.log_bundle", f"is false, but tracking.register_as={tracking['register_as']} puts the run's bundle in "
                        "the zoo, so the run would train and then fail to register.",
                        "leave tracking.log_bundle at true, or drop tracking.register_as.")


def cycle_goes_up(config: dict[str, Any]) -> None:
    """A cyclical schedule whose max_lr is not above its base_lr has no cycle to speak of."""
    sched = config.get("scheduler") or {}
    base, top = sched.get("base_lr"), sched.get("max_lr")
    if is_number(base) and is_number(top) and base > 0 and top <= base:
        raise UserError("scheduler.max_lr", f"is {top:g}, not above scheduler.base_lr={base:g}: the cycle would run the lr "
                        "down and back instead of up to a peak.", f"pass scheduler.max_lr={base * 10:g} (ten times base_lr, the default).")


def better_mode(metric: Any, mode: Any) -> str | None:
    """The mode a loss (min) or an accuracy (max) needs, when `mode` is the other one; None when
    they agree or the metric is neither (`gap/train_val_acc` shrinks as it gets better)."""
    name = str(metric)
    if name.startswith("gap/"):
        return None
    if name.endswith("/loss") and mode == "max":
        return "min"
    if name.endswith("/acc") and mode == "min":
        return "max"
    return None


def modes_match_metrics(config: dict[str, Any]) -> None:
    """Early stopping and the kept best epoch, told to minimise an accuracy (or maximise a loss),
    would stop as the run improves and keep its worst epoch: refused."""
    stopping = config.get("early_stopping") or {}
    good = better_mode(stopping.get("metric"), stopping.get("mode")) if stopping.get("_target_") else None
    if good:
        raise UserError("early_stopping.mode", f"is {stopping['mode']}, so early stopping would count a falling "
                        f"early_stopping.metric={stopping['metric']} as progress and stop the run while it improves.",
                        f"pass early_stopping.mode={good} with {stopping['metric']}.")
    tracking = config.get("tracking") or {}
    good = better_mode(tracking.get("best_metric"), tracking.get("best_mode"))
    if good:
        raise UserError("tracking.best_mode", f"is {tracking['best_mode']}, so the run's best epoch (kept beside the last, and "
                        f"the weights its bundle and the zoo get) would be the worst by tracking.best_metric={tracking['best_metric']}.",
                        f"pass tracking.best_mode={good} with {tracking['best_metric']}.")


def search_is_consistent(config: dict[str, Any]) -> None:
    s = config.get("search")
    if not isinstance(s, dict):
        return
    stages = s.get("stages")
    if not isinstance(stages, list) or not stages or any(
            not isinstance(st, dict) or set(st) != {"samples", "epochs"} or any(
                not isinstance(st[k], int) or isinstance(st[k], bool) or st[k] < 1 for k in ("samples", "epochs")) for st in stages):
        raise UserError("search.stages", f"must be a non-empty list of {{samples: N, epochs: E}} with whole numbers ≥ 1 (got {stages!r}).",
                        "pass e.g. 'search.stages=[{samples:12,epochs:3},{samples:6,epochs:10}]'.")
    metric, mode = s.get("metric"), s.get("mode")
    good = better_mode(metric, mode)
    if good:
        raise UserError("search.mode", f"is {mode}, which would rank the worst trials by search.metric={metric} first.",
                        f"pass search.mode={good} with {metric}.")
    for i, st in enumerate(stages[:-1]):
        if s["top_k"] > st["samples"] and s.get("method") == "random":
            raise UserError("search.top_k", f"is {s['top_k']}, but stage {i + 1} draws only {st['samples']} trials to narrow from.",
                            f"pass search.top_k={st['samples']} or fewer, or more samples in that stage.")
    if s.get("scheduler") == "asha" and any(s["grace_period"] > st["epochs"] for st in stages):
        short = min(st["epochs"] for st in stages)
        raise UserError("search.grace_period", f"is {s['grace_period']} epochs, longer than a stage of {short} epochs: ASHA would never stop a trial.",
                        f"pass search.grace_period={max(1, short // 3)} or search.scheduler=none.")


def zoo_alias(config: dict[str, Any]) -> None:
    present, alias = get(config, "tracking.register_alias")
    if present and isinstance(alias, str):
        from components.zoo.registry import alias_problem  # MLflow's own rules, checked before training, not after

        problem = alias_problem(alias)
        if problem:
            raise UserError("tracking.register_alias", f"is {alias!r}: {problem}.", "pass another alias, e.g. tracking.register_alias=champion.")
    if present and alias is not None and not (config.get("tracking") or {}).get("register_as"):
        raise UserError("tracking.register_alias", "is set, but tracking.register_as (the zoo name it would point into) is not.",
                        "pass tracking.register_as=NAME as well.")


def endpoint_has_storage(config: dict[str, Any]) -> None:
    """An S3 endpoint serves only an s3:// `trainer.storage_path`; set alone it would be read by
    nothing (checkpoints going to the local folder the user thought they had moved)."""
    trainer = config.get("trainer") or {}
    endpoint, path = trainer.get("storage_endpoint"), trainer.get("storage_path")
    if endpoint and not str(path or "").startswith("s3://"):
        where = f"is {path!r}, a folder" if path else "is not set (checkpoints go to OUTPUT_DIR/ray_results)"
        raise UserError("trainer.storage_endpoint", f"is {endpoint}, but trainer.storage_path {where}: nothing would use the endpoint.",
                        "pass trainer.storage_path=s3://BUCKET/PREFIX as well, or drop trainer.storage_endpoint.")


def members_are_names(config: dict[str, Any]) -> None:
    present, members = get(config, "members")
    if present and (not isinstance(members, list) or any(not isinstance(m, str) or not ZOO_REF.match(m) and not re.fullmatch(r"[0-9a-f]{32}", m) for m in members)):
        raise UserError("members", f"must be a list of MLflow run ids (32 hex characters) and zoo references NAME, NAME@ALIAS or "
                        f"NAME/VERSION (got {members!r}).", "pass e.g. 'members=[digits-mlp@champion,0123456789abcdef0123456789abcdef]'.")


RULES: tuple[Callable[[dict[str, Any]], None], ...] = (
    fractions_leave_training_data, digits_classes, lr_range_is_a_range, search_is_consistent, modes_match_metrics, cycle_goes_up,
    registered_runs_keep_a_bundle, zoo_alias, endpoint_has_storage, members_are_names)
