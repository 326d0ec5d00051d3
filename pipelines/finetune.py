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

from omegaconf import DictConfig

from pipelines.runtime.app import hydra_app
from pipelines.runtime.finetuning import adopt_bundle
from pipelines.runtime.training import run_cli


@hydra_app("finetune")
def main(cfg: DictConfig) -> float:
    return run_cli(cfg, "finetune", adopt_bundle)


if __name__ == "__main__":
    main()
