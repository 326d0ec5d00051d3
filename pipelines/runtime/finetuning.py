"""Fine-tuning from the model zoo, shared by `raysitter finetune` and the transfer study: the
zoo model is pulled and verified, and becomes overrides of the run's config (its model) and
the run's context (the bundle to start from)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from components.tracking import redact
from components.zoo.registry import ZooError, ZooRef, fetch
from components.zoo.transfer import STRATEGIES
from pipelines.runtime import validate
from pipelines.runtime.context import RunContext, ZooSource
from pipelines.runtime.errors import UserError
from pipelines.runtime.validate import pin


def adopt_bundle(config: dict[str, Any], verbose: bool = True) -> tuple[list[str], RunContext]:
    """Pulls and verifies the zoo model; returns the overrides that make the run's config its
    model and preprocessing (`~model +model={…}`: the bundle's own model config; the
    preprocessing statistics are read from the bundle) and the run's context (the source)."""
    ft = config["finetune"]
    if ft["strategy"] not in STRATEGIES:
        raise UserError("finetune.strategy", f"must be one of {', '.join(STRATEGIES)} (got {ft['strategy']!r}).", "pass finetune.strategy=head, top or full.")
    if not isinstance(ft["lr_scale"], (int, float)) or not 0 < ft["lr_scale"] <= 1:
        raise UserError("finetune.lr_scale", f"must be in (0, 1] (got {ft['lr_scale']!r}).", "pass e.g. finetune.lr_scale=0.1 (the CS231n advice).")
    uri = config["tracking"]["uri"]
    try:
        ref = ZooRef.parse(config["zoo"])
        if verbose:
            print(f"raysitter finetune: pulling {ref} from {redact(uri)} …", flush=True)
        path, version = fetch(uri, ref, Path(config["output_dir"]) / "zoo")
    except ZooError as e:
        raise UserError("zoo", f"{e}.", e.fix or "list the zoo with `raysitter zoo list` (same --tracking-uri), or push a run first: raysitter zoo push RUN_ID --name NAME.") from None
    from components.zoo import verify_bundle
    from components.zoo.registry import recorded_digest

    digest = recorded_digest(version, ref)
    info = verify_bundle(path, digest)
    input_shape, _ = validate.check_data(config)
    if list(input_shape) != list(info["input_shape"]):
        raise UserError(
            "data",
            f"gives images of shape {list(input_shape)}, but {ref} was trained on {info['input_shape']}.",
            "fine-tune on data of the same shape (resize image folders with data.image_size), or pick a zoo model trained on it.",
        )
    source = f"{ref.name}/{version.version}"
    if verbose:
        print(f"raysitter finetune: {ref} = version {version.version} (run {version.run_id}), bundle {path}", flush=True)
    overrides = ["~model", pin("+model", info["model"]), "~preprocess", pin("+preprocess", {"from_zoo": source})]
    zoo = ZooSource(ref=source, path=str(path), digest=digest, tracking_uri=uri, strategy=ft["strategy"], lr_scale=float(ft["lr_scale"]))
    return overrides, RunContext(zoo=zoo, tags={"zoo.source": source, "zoo.source_ref": str(ref),
                                                "zoo.source_run_id": str(version.run_id), "finetune.strategy": ft["strategy"]})
