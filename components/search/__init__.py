"""Search spaces as data, and the coarse → fine narrowing no tuning library does for you.

A space maps config keys to one distribution each, written as one-key dicts, nested like the
config (`{"optimizer": {"lr": {"loguniform": [1e-5, 1e-1]}}}`) or with dotted keys
(`{"optimizer.lr": {"loguniform": [1e-5, 1e-1]}}`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
import copy
from dataclasses import dataclass
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy only for the annotation: this module imports without it
    import numpy as np

KINDS = ("loguniform", "uniform", "randint", "choice")


@dataclass(frozen=True)
class Dist:
    kind: str
    args: tuple

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice({', '.join(map(str, self.args))})"
        lo, hi = self.args
        return f"{self.kind}({lo:.3g}, {hi:.3g})"


def flatten_space(space: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested keys → dotted keys, stopping at each distribution (a one-key dict naming a kind)."""
    out: dict[str, Any] = {}
    for key, spec in space.items():
        if isinstance(spec, Mapping) and not (len(spec) == 1 and next(iter(spec)) in KINDS):
            out.update(flatten_space(spec, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = spec
    return out


def parse_space(space: Mapping[str, Any]) -> dict[str, Dist]:
    """Validates and parses a space; raises ValueError naming the key at fault."""
    out: dict[str, Dist] = {}
    for key, spec in flatten_space(space).items():
        if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise ValueError(f"{key}: write one of {', '.join(KINDS)} as a one-key mapping, e.g. {{loguniform: [1e-5, 1e-1]}}; got {spec!r}")
        kind, args = next(iter(spec.items()))
        args = tuple(args)
        if kind == "choice":
            if not args:
                raise ValueError(f"{key}: choice needs at least one value")
        else:
            if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
                raise ValueError(f"{key}: {kind} needs [low, high] numbers, got {list(args)}")
            lo, hi = args
            if lo > hi:
                raise ValueError(f"{key}: low {lo} is above high {hi}")
            if kind == "loguniform" and lo <= 0:
                raise ValueError(f"{key}: loguniform bounds must be positive, got low {lo}")
            if kind == "randint" and not all(float(a).is_integer() for a in args):
                raise ValueError(f"{key}: randint bounds must be whole numbers, got {list(args)}")
        out[key] = Dist(kind, args)
    return out


def grid_values(d: Dist, points: int) -> list[float]:
    lo, hi = d.args
    if points == 1:
        return [math.sqrt(lo * hi) if d.kind == "loguniform" else (lo + hi) / 2]
    if d.kind == "loguniform":
        a, b = math.log10(lo), math.log10(hi)
        return [10 ** (a + (b - a) * i / (points - 1)) for i in range(points)]
    values = [lo + (hi - lo) * i / (points - 1) for i in range(points)]
    return sorted({round(v) for v in values}) if d.kind == "randint" else values


def narrow(
    space: Mapping[str, Dist],
    trials: Sequence[Mapping[str, Any]],
    metric: str,
    mode: str = "max",
    top_k: int = 3,
    margin: float = 0.25,
) -> dict[str, Dist]:
    """The next stage's space from this stage's `trials` (dicts holding each key's value and
    `metric`): each range shrinks to the span of the top-k trials, widened by `margin` (a
    fraction of that span, at least `margin` of a decade for loguniform) on each side, and
    clipped to the original range. Choices keep the values the top-k used."""
    scored = [t for t in trials if isinstance(t.get(metric), (int, float)) and math.isfinite(t[metric])]
    if not scored:
        return dict(space)
    best = sorted(scored, key=lambda t: t[metric], reverse=(mode == "max"))[:top_k]
    out: dict[str, Dist] = {}
    for key, d in space.items():
        values = [t[key] for t in best if key in t]
        if not values:
            out[key] = d
        elif d.kind == "choice":
            out[key] = Dist("choice", tuple(v for v in d.args if v in values))
        elif d.kind == "loguniform":
            lo, hi = math.log10(min(values)), math.log10(max(values))
            pad = max(margin * (hi - lo), margin)  # in decades
            out[key] = Dist("loguniform", (max(10 ** (lo - pad), d.args[0]), min(10 ** (hi + pad), d.args[1])))
        else:
            lo, hi = min(values), max(values)
            pad = max(margin * (hi - lo), margin * (d.args[1] - d.args[0]) / 4)
            new = (max(lo - pad, d.args[0]), min(hi + pad, d.args[1]))
            out[key] = Dist(d.kind, (math.floor(new[0]), math.ceil(new[1])) if d.kind == "randint" else new)
    return out


def set_dotted(config: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `config` with each dotted key set (keys must already exist)."""
    config = copy.deepcopy(config)
    for key, value in values.items():
        *path, last = key.split(".")
        node = config
        for part in path:
            node = node[part]
        node[last] = value
    return config


_MISSING = object()


def get_dotted(config: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The value at dotted `key` (`trainer.use_gpu`), or `default` where the path does not exist."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def has_dotted(config: Mapping[str, Any], key: str) -> bool:
    return get_dotted(config, key, _MISSING) is not _MISSING


def sample(d: Dist, rng: np.random.Generator) -> Any:
    """One random draw (log-uniform for loguniform), for searches run without Ray Tune."""
    if d.kind == "choice":
        return d.args[int(rng.integers(len(d.args)))]
    lo, hi = d.args
    if d.kind == "loguniform":
        return float(10 ** rng.uniform(math.log10(lo), math.log10(hi)))
    if d.kind == "randint":
        return int(rng.integers(int(lo), int(hi) + 1))
    return float(rng.uniform(lo, hi))
