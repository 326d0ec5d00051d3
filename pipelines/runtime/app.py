"""Turns a pipeline function into a Hydra app with raysitter's conventions.

- configs come from the packaged `conf/` folder;
- `group.sub=option` is accepted for nested config groups (`model.activation=elu` means
  `model/activation=elu`), so every choice reads like a config key;
- a `UserError` prints one paragraph and exits 2; Hydra's own composition errors (an unknown
  group option, a bad override) also exit 2; a model bundle that fails verification is refused
  with exit 1; failures while running exit 1. In a multirun a failing job is recorded and the
  others run; the summary lists it and the command exits 1.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
import functools
import os
from pathlib import Path
import re
import sys
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

import conf
from components.zoo import BundleError
from pipelines.runtime import multirun
from pipelines.runtime.errors import UserError, refuse_artifact, report_and_exit

CONF_DIR = Path(conf.__file__).parent

# ${mul:a,b} in config files, e.g. a cyclic schedule's max_lr: ${mul:${optimizer.lr},10}
if not OmegaConf.has_resolver("mul"):
    OmegaConf.register_new_resolver("mul", lambda a, b: float(a) * float(b))


def conf_targets() -> frozenset[str]:
    """Every `_target_` raysitter's own config files name: what a saved run state may build."""
    import yaml

    from components.zoo.bundle import targets

    return frozenset(value for f in CONF_DIR.rglob("*.yaml") for _, value in targets(yaml.safe_load(f.read_text()) or {}))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _option(group: str, option: str) -> dict[str, Any]:
    """An option file's own keys, after the options of its group it extends (trainer/gpu → default)."""
    import yaml

    path = CONF_DIR / group / f"{option}.yaml"
    if not path.is_file():
        return {}
    node = yaml.safe_load(path.read_text()) or {}
    base: dict[str, Any] = {}
    for entry in node.get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_":
            base = _merge(base, _option(group, entry.lstrip("/")) if "/" not in entry.lstrip("/") else {})
    return _merge(base, {k: v for k, v in node.items() if k != "defaults"})


def _primary(name: str) -> dict[str, Any]:
    import yaml

    node = yaml.safe_load((CONF_DIR / f"{name}.yaml").read_text()) or {}
    base: dict[str, Any] = {}
    for entry in node.get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_":
            base = _merge(base, _primary(entry.lstrip("/")))
    return _merge(base, {k: v for k, v in node.items() if k not in ("defaults", "hydra")})


def declared_defaults(config_name: str, choices: dict[str, Any]) -> dict[str, Any]:
    """The config as its files declare it, before any value override: each chosen option's
    file at its group's place, then the primary config's own keys. What `pipelines.runtime.schema`
    reads the declared type of every key from."""
    tree: dict[str, Any] = {}
    for group, option in choices.items():
        if group.startswith("hydra") or "@" in group or not option:
            continue
        node = _option(group, str(option))
        for part in reversed(group.split("/")):
            node = {part: node}
        tree = _merge(tree, node)
    return _merge(tree, _primary(config_name))


@contextmanager
def hydra_context() -> Iterator[None]:
    """Where Hydra's compose API can run: inside a running Hydra app, its own config search
    path; elsewhere (tests, `submit`, tools), conf/'s."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


@functools.lru_cache(maxsize=None)
def declared_choices(config_name: str) -> dict[str, str]:
    """The option each config group of `config_name` takes when the command line names none."""
    from hydra import compose

    with hydra_context():
        cfg = compose(config_name=config_name, return_hydra_config=True)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    return {k: v for k, v in choices.items() if not k.startswith("hydra") and v is not None}


def rewrite_group_overrides(args: Sequence[str], conf_dir: Path = CONF_DIR) -> list[str]:
    """`model.activation=elu` → `model/activation=elu` when conf/model/activation/ is a group;
    a home-relative path (`data.root=~/photos`: the shell leaves a `~` after `=` alone, and
    Hydra's grammar has no unquoted `~` in a value) is quoted for Hydra."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and "." in key and not key.startswith(("-", "+", "~", "hydra.")) and (conf_dir / key.replace(".", "/")).is_dir():
            arg = f"{key.replace('.', '/')}={value}"
        elif sep and not key.startswith("-") and (value == "~" or value.startswith("~/")) and "'" not in value:
            arg = f"{key}='{value}'"
        out.append(arg)
    return out


def check_overrides(config_name: str, overrides: list[str]) -> None:
    """Composes the config once to turn Hydra's composition errors (an unknown option, a key
    that does not exist, bad override syntax) into one paragraph naming the key (UserError)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            compose(config_name=config_name, overrides=overrides)
    except MissingConfigException as e:
        missing = re.search(r"Could not find '([^']+)'", str(e))
        path = missing.group(1) if missing else str(e).splitlines()[0]
        group, _, option = path.rpartition("/")
        listed = re.search(r"Available options in '[^']+':\n((?:\t\S+\n?)+)", str(e))  # Hydra's own options (hydra/launcher=basic) too
        options = listed.group(1).split() if listed else sorted(f.stem for f in (CONF_DIR / group).glob("*.yaml")) if group else []
        raise UserError(group.replace("/", ".") or "config", f"has no option {option!r} (no conf/{path}.yaml).",
                        f"use one of {', '.join(options)}." if options else "check the name.") from None
    except OverrideParseException as e:
        raise UserError("command line", f"an override is not valid Hydra syntax ({str(e).splitlines()[0]}).",
                        "write overrides as key=value; quote values with spaces or brackets for the shell, e.g. 'data.classes=[0,1]'.") from None
    except ConfigCompositionException as e:
        key = re.search(r"Could not override '([^']+)'", str(e))
        missing = re.search(r"Key '([^']+)' is not in struct", f"{e} {e.__cause__}")
        if key and missing and missing.group(1) not in key.group(1).split("."):  # the value brings a key the node lacks
            raise UserError(key.group(1), f"has no key {missing.group(1)!r}, which the value given to it adds.",
                            f"replace the whole node: '~{key.group(1)}' '+{key.group(1)}=VALUE' (e.g. to change a search "
                            "distribution's kind).") from None
        if key and key.group(1).startswith("hydra.launcher.") and not any(o.startswith("hydra/launcher=") for o in overrides):
            setting = key.group(1).removeprefix("hydra.launcher.")
            ray_keys = [k for k in OmegaConf.load(CONF_DIR / "hydra" / "launcher" / "ray.yaml") if not str(k).startswith("_")]
            if setting in ray_keys:  # a setting of raysitter's Ray launcher, given to Hydra's basic one
                raise UserError(key.group(1), "is a setting of raysitter's Ray launcher, and this multirun runs Hydra's basic "
                                "launcher (jobs one after another), which has none.",
                                f"add hydra/launcher=ray to run the jobs on Ray ({', '.join(ray_keys)} apply to it).") from None
        if key:
            own = key.group(1).split(".")[0] in ("trainer", "tracking", "search", "check", "finetune")  # raysitter reads only its keys
            near = close_keys(config_name, overrides, key.group(1))
            raise UserError(key.group(1), "is not a key of this config (a typo?)" + (f"; did you mean {near}?" if near else "."),
                            f"check the spelling: `raysitter {config_name.split('/')[0]} --cfg job` lists every key"
                            + ("." if own or near else f"; a new argument for a component is added with +{key.group(1)}=VALUE.")) from None
        raise UserError("config", f"cannot be composed ({' '.join(str(e).split())[:300]}).", "check the overrides against --cfg job.") from None


def check_multirun(config_name: str, overrides: list[str]) -> None:
    """`check_overrides` for a multirun: its first job (each sweep at its first value), then each
    other option a swept config group is given (`optimizer=sgd,adamm`), so a misspelt key or
    option is refused in one paragraph before any job starts. Values are checked per job, as
    each starts (a refused job leaves the others running)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        check_overrides(config_name, overrides)  # names the override Hydra cannot read
        return
    basic = all(o.key_or_group != "hydra/sweeper" or o.value() == "basic" for o in parsed)
    lines, options = [], []
    for i, o in enumerate(parsed):
        if not o.is_sweep_override():
            lines.append(o.input_line)
            continue
        values = sweep_values(o, basic)
        if values is None:  # interval(): for the sampling sweeper given instead of Hydra's basic one
            return
        lines.append(f"{o.get_key_element()}={values[0]}")
        if (CONF_DIR / o.key_or_group).is_dir() or o.key_or_group.startswith("hydra/"):
            options += [(i, f"{o.get_key_element()}={v}") for v in values[1:]]
    check_overrides(config_name, lines)
    for i, line in options[:32]:
        check_overrides(config_name, [*lines[:i], line, *lines[i + 1:]])


def sweep_values(o: Any, basic: bool) -> list[str] | None:
    """The values a sweep override gives its jobs, one per job; None for an `interval()` that a
    sweeper other than Hydra's basic one samples. Refused (exit 2) where `-m` would run no job
    (an empty range, a glob matching no option) or stop in a traceback (`interval()` with the
    basic sweeper, which lists its jobs and cannot draw from a range)."""
    from hydra.core.override_parser.types import Override, ValueType

    key, given = o.get_key_element(), o.input_line.partition("=")[2]
    if o.value_type == ValueType.INTERVAL_SWEEP:
        if not basic:
            return None
        raise UserError(key, f"is {given}, a range to draw values from; `-m` runs Hydra's basic sweeper, which runs the values it is "
                             "given and cannot draw from a range.",
                        f"list the values ({key}=1e-4,1e-3,1e-2), or sample {key} in log space with `raysitter tune` "
                        f"('++search.space.{key}={{loguniform:[1e-4,1e-1]}}', README: Hyperparameter search).")
    if o.value_type == ValueType.GLOB_CHOICE_SWEEP:
        group = CONF_DIR / o.key_or_group
        if not group.is_dir():
            if o.key_or_group.startswith("hydra/"):  # Hydra's own groups (its launchers, sweepers)
                return None
            raise UserError(key, f"is {given}, but glob() picks options of a config group (e.g. optimizer=glob(*)) and `{key}` "
                                 "holds a value.", f"list its values ({key}=1,2,3) or give a range ({key}='range(1,4)').")
        names = sorted(f.stem for f in group.glob("*.yaml"))
        values = o.value().filter(names)
        if not values:
            raise UserError(key, f"{given} matches no option of {o.key_or_group} ({', '.join(names)}), so the multirun would run no job.",
                            f"change the pattern, or list the options: {key}={','.join(names[:2])}.")
        return values
    values = [Override._get_value_element_as_str(v) for v in o.sweep_iterator()]
    if not values:
        raise UserError(key, f"is {given}, which holds no value, so the multirun would run no job.",
                        "give a range that holds values: range(1,4) runs 1, 2 and 3 (its end is left out).")
    return values


def close_keys(config_name: str, overrides: list[str], key: str) -> str:
    """The config's keys spelled most like `key` (composed without the override that names it),
    as `a` or `a or b`; empty when none is close or the rest does not compose."""
    import difflib

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    rest = [o for o in overrides if o.partition("=")[0].lstrip("+~") != key]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = OmegaConf.to_container(compose(config_name=config_name, overrides=rest), resolve=False)
    except Exception:
        return ""

    def keys(node: object, prefix: str = "") -> list[str]:
        if not isinstance(node, dict):
            return []
        return [k for name, value in node.items() if not str(name).startswith("_")
                for k in [f"{prefix}{name}", *keys(value, f"{prefix}{name}.")]]

    return " or ".join(difflib.get_close_matches(key, [k for k in keys(cfg) if k.count(".") == key.count(".")], n=2, cutoff=0.8))


def with_launcher(config_name: str, args: list[str]) -> list[str]:
    """A multirun given a Ray address (`trainer.address=…` or RAY_ADDRESS, which a submitted job
    has) runs its jobs concurrently on that Ray (`hydra/launcher=ray`) unless the command line
    picks a launcher; raysitter's launcher is registered with Hydra here, explicitly."""
    if not any(a in ("-m", "--multirun") for a in args):
        return args
    from hydra_plugins.raysitter_launcher.ray_launcher import register

    register()
    picked = any(a.lstrip("+").startswith(("hydra/launcher=", "hydra.launcher=")) for a in args)
    address = (os.environ.get("RAY_ADDRESS") or "local") != "local" or any(
        a.startswith("trainer.address=") and a not in ("trainer.address=null", "trainer.address=local") for a in args)
    if picked or not address or config_name not in ("train", "finetune"):  # jobs that are one Ray Train run each
        return args
    return [*args, "hydra/launcher=ray"]


def hydra_app(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[..., Any]]:
    def decorate(task: Callable[[DictConfig], Any]) -> Callable[..., Any]:
        entered = False

        def job(cfg: DictConfig) -> Any:
            nonlocal entered
            entered = True
            if multirun.in_multirun():
                multirun.JOBS.append(multirun.job_number())
            try:
                try:
                    return task(cfg)
                except UserError as e:
                    report_and_exit(e)
                except BundleError as e:
                    refuse_artifact(e)
            except (SystemExit, Exception) as e:  # a multirun goes on with its other jobs
                if not multirun.in_multirun() or isinstance(e, SystemExit) and e.code in (0, None):
                    raise
                multirun.job_failed(e)
                return None

        # where a launcher's process finds it again (MODULE.main.hydra_task); `python -m pipelines.train`
        # runs the module as __main__, its real name is in the spec
        main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        job.pipeline = main_spec.name if task.__module__ == "__main__" and main_spec else task.__module__
        hydra_task = hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(job)

        def run(argv: Sequence[str] | None = None, prog: str | None = None) -> Any:
            nonlocal entered
            entered = False
            args = with_launcher(config_name, rewrite_group_overrides(list(sys.argv[1:] if argv is None else argv)))
            sys.argv = [prog or sys.argv[0], *args]
            rest = [a for a in args if a not in ("-m", "--multirun")]
            if not any(a.startswith("-") for a in rest):  # Hydra's flags (--cfg, --help, …) keep their own handling
                try:
                    (check_multirun if len(rest) < len(args) else check_overrides)(config_name, rest)
                except UserError as e:
                    report_and_exit(e)
            multirun.FAILED.clear()
            multirun.JOBS.clear()
            multirun.SWEEP.clear()
            try:
                result = hydra_task()
            except SystemExit as e:
                if e.code not in (0, None, 130) and not entered:  # 130: a launcher's jobs interrupted (Ctrl-C)
                    raise SystemExit(2) from None  # Hydra refused the config or the overrides
                raise
            if multirun.all_refused():
                multirun.drop_empty_sweep_folder()
                print(f"raysitter: every job of the multirun ({len(multirun.JOBS)}) was refused; nothing ran.", file=sys.stderr, flush=True)
                raise SystemExit(2)
            if multirun.FAILED:  # the summary has listed them; the command as a whole failed
                raise SystemExit(1)
            return result

        run.task = task  # the undecorated pipeline, for tests
        run.hydra_task = job  # what a launcher runs per job (hydra/launcher=ray, in another process)
        return run

    return decorate
