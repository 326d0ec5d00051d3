"""The playbook's choices combine: eight mixed configurations each train on digits through Ray."""
from __future__ import annotations

from mlflow.tracking import MlflowClient
import pytest

from pipelines import train

pytestmark = pytest.mark.slow

MATRIX = [
    "model=mlp model.activation=sigmoid init=xavier optimizer=adagrad scheduler=step",
    "model=mlp model.activation=tanh init=xavier_uniform optimizer=rmsprop scheduler=exponential model.dropout=0.5",
    "model=mlp model.activation=leaky_relu init=he optimizer=nesterov scheduler=inverse_time model.batch_norm=true",
    "model=mlp model.activation=prelu optimizer=adamw scheduler=cosine model.drop_connect=0.3 preprocess=per_dataset",
    "model=convnet model.activation=elu init=he optimizer=momentum scheduler=cyclic augment=rotate model.channels=[8,16]",
    "model=convnet model.activation=maxout optimizer=adam model.pool=fractional augment=random_combo model.channels=[8,16] model.bn_position=post_activation",
    "model=resnet model.widths=[8,16] model.stochastic_depth=0.2 optimizer=sgd scheduler=cosine_restarts augment=translate",
    "model=mlp model.hidden=[64] optimizer=lbfgs init=small_random preprocess=none augment=shear",
]


def test_eight_mixed_combinations_train_through_ray(ray_session, output_dir):
    for overrides in MATRIX:
        train.main([*overrides.split(), "trainer.epochs=2", "tracking.log_model=false"], prog="raysitter train")
    client = MlflowClient(f"sqlite:///{output_dir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("raysitter").experiment_id])
    assert len(runs) == len(MATRIX)
    for run in runs:
        assert run.info.status == "FINISHED", run.data.tags["command"]
        assert run.data.metrics["val/acc"] > 0.2, run.data.tags["command"]  # chance is 0.1
