"""The playbook's choices combine: eight mixed configurations each pass the command's checks and
train on digits with the per-worker loop Ray runs (in-process here: what Ray adds around the
loop is tested once in test_train_ray, not per combination)."""
from __future__ import annotations

import pytest

from pipelines.runtime.validate import prepare_command
from pipelines.runtime.worker import LocalSession, run_training

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


@pytest.mark.parametrize("overrides", MATRIX)
def test_mixed_combinations_pass_the_checks_and_train(overrides, output_dir):
    prepared = prepare_command("train", [*overrides.split(), "trainer.epochs=2", "tracking.log_model=false"])
    session = LocalSession()
    final = run_training(prepared.config, session)
    assert [r["epoch"] for r in session.reports] == [1, 2]
    assert final["val/acc"] > 0.2 and final["test/acc"] > 0.2  # chance is 0.1
