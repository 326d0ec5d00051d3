"""raysitter train: compose → validate → build → Ray Train → MLflow.

    raysitter train                                  # digits, MLP, Adam, local Ray, embedded MLflow
    raysitter train trainer.num_workers=2 optimizer=sgd
    raysitter train -m optimizer=sgd,adam            # Hydra multirun
"""
from __future__ import annotations

from omegaconf import DictConfig

from pipelines.runtime.app import hydra_app
from pipelines.runtime.training import run_cli


@hydra_app("train")
def main(cfg: DictConfig) -> float:
    return run_cli(cfg, "train")


if __name__ == "__main__":
    main()
