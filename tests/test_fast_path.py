"""The GPU fast path (trainer=gpu) on a machine without a GPU: a clear message, a CPU run, and
the same results as trainer=default. And the loop's device-resident data path."""
from __future__ import annotations

from omegaconf import OmegaConf
import pytest
import torch

from pipelines.runtime import validate
from pipelines.runtime.worker import LocalSession, run_training

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU fallback")


def test_trainer_gpu_falls_back_to_the_cpu_with_a_message(compose_train, output_dir, capsys):
    config = validate.prepare_command("train", ["trainer=gpu"]).config
    err = capsys.readouterr().err
    assert "no CUDA GPU" in err and "running on the CPU" in err
    t = config["trainer"]
    assert t["use_gpu"] is False and t["precision"] == "bf16" and t["channels_last"] is True and t["batch_size"] == 512
    validate.prepare_command("train", ["trainer.precision=bf16"])  # asked for on a CPU run: said, not silently ignored
    assert "apply on GPUs only" in capsys.readouterr().err


def test_trainer_gpu_gives_the_same_results_as_default_on_cpu(compose_train):
    def run(trainer: str) -> list[dict]:
        config = OmegaConf.to_container(compose_train([f"trainer={trainer}", "trainer.epochs=2", "trainer.batch_size=64",
                                                       "model=convnet", "model.channels=[4]", "model.hidden=[16]",
                                                       "trainer.use_gpu=false", "diagnostics=off"]), resolve=True)
        session = LocalSession()
        run_training(config, session)
        return session.reports

    fast, default = run("gpu"), run("default")
    for a, b in zip(fast, default):
        assert {k: v for k, v in a.items() if "_s" not in k} == {k: v for k, v in b.items() if "_s" not in k}


def test_bad_precision_is_refused(compose_train, output_dir):
    with pytest.raises(validate.UserError, match="trainer.precision"):
        validate.prepare_command("train", ["trainer.precision=fp8"])


@pytest.mark.slow
def test_torch_compile_trains_and_checkpoints_the_plain_module(compose_train, tmp_path):
    """trainer.compile=true (≈ 25 s of compilation on 2 cores with an empty inductor cache, as
    in CI; a small convnet's ≈ 40 s): training works and the checkpoint holds the module's own
    parameter names, loadable without torch.compile."""
    from pipelines.runtime import build

    config = OmegaConf.to_container(compose_train(["trainer.epochs=1", "trainer.compile=true", "diagnostics=off", "model.hidden=[8]"]),
                                    resolve=True)
    session = LocalSession(checkpoint_root=str(tmp_path))
    metrics = run_training(config, session)
    assert metrics["val/acc"] > 0.1
    net, _, _ = build.model_from_checkpoint(session.last_checkpoint)
    assert not any(k.startswith("_orig_mod") for k in net.state_dict())
