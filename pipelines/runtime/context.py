"""A run's bookkeeping, beside its config and never inside it: which MLflow run the worker fills
(and the store, credentials included), the sweep and stage it belongs to, the zoo model it
fine-tunes, its extra tags, how its progress line is labelled. The config a worker receives is
exactly the config logged as the run's params; everything else a run needs to know is here."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class ZooSource:
    """The verified zoo bundle a fine-tuning run starts from."""

    ref: str  # NAME/VERSION in the registry (or what a study calls its own source)
    path: str  # the driver's verified copy of the bundle folder
    digest: str  # sha256 of its manifest, as recorded on the registry version
    tracking_uri: str  # where a worker that cannot see `path` downloads it from
    strategy: str  # head | top | full
    lr_scale: float


@dataclass(frozen=True)
class RunContext:
    run_id: str | None = None  # the MLflow run worker 0 logs to (None: no tracking, e.g. in-process tests)
    tracking_uri: str | None = None
    label: str = ""  # prefix of the progress line (a trial's `s1/00003`)
    quiet: bool = False  # no per-epoch progress line (short in-process arms of a study)
    sweep: str | None = None  # the sweep or study this run belongs to
    stage: int | None = None
    zoo: ZooSource | None = None
    tags: dict[str, str] = field(default_factory=dict)  # extra MLflow tags of the run (set by the driver)
    # run_id still unknown: the driver announces it under this key once its run is open (announce.py)
    announced_as: str | None = None

    def tracked(self, run_id: str, tracking_uri: str) -> RunContext:
        return replace(self, run_id=run_id, tracking_uri=tracking_uri, announced_as=None)

    def to_be_announced(self, key: str, tracking_uri: str) -> RunContext:
        """Tracked in a run the driver is still opening: worker 0 waits for its id (announce.py)."""
        return replace(self, run_id=None, tracking_uri=tracking_uri, announced_as=key)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RunContext:
        data = dict(data or {})
        zoo = data.pop("zoo", None)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known, zoo=ZooSource(**zoo) if zoo else None)

