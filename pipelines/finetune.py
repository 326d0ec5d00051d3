"""raysitter finetune zoo=NAME@alias data=…: transfer learning from the model zoo.

    raysitter finetune zoo=digits-convnet@champion data.classes=[5,6,7,8,9] data.train_per_class=5
    raysitter finetune zoo=digits-convnet/2 finetune.strategy=head

The bundle is pulled (and verified) into OUTPUT_DIR/zoo/NAME/vVERSION; its architecture and
preprocessing statistics are used; the last layer is re-initialised for the new classes and
`finetune.strategy` decides what trains (head | top | full), pretrained layers at
optimizer.lr × finetune.lr_scale. Runs on Ray Train like `train`; the MLflow run is tagged with
the source model version.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from components.tracking import redact
from components.zoo.registry import ZooError, ZooRef, fetch
from components.zoo.transfer import STRATEGIES
from pipelines.runtime import validate
from pipelines.runtime.app import hydra_app
from pipelines.runtime.context import RunContext, ZooSource
from pipelines.runtime.errors import UserError
from pipelines.runtime.validate import pin
from pipelines.runtime.training import run_cli


def adopt_bundle(config: dict[str, Any]) -> tuple[list[str], RunContext]:
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
    print(f"raysitter finetune: {ref} = version {version.version} (run {version.run_id}), bundle {path}", flush=True)
    overrides = ["~model", pin("+model", info["model"]), "~preprocess", pin("+preprocess", {"from_zoo": source})]
    zoo = ZooSource(ref=source, path=str(path), digest=digest, tracking_uri=uri, strategy=ft["strategy"], lr_scale=float(ft["lr_scale"]))
    return overrides, RunContext(zoo=zoo, tags={"zoo.source": source, "zoo.source_ref": str(ref),
                                                "zoo.source_run_id": str(version.run_id), "finetune.strategy": ft["strategy"]})


@hydra_app("finetune")
def main(cfg: DictConfig) -> float:
    return run_cli(cfg, "finetune", adopt_bundle)


if __name__ == "__main__":
    main()
