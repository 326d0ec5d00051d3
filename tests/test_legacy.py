"""Artifacts written before the component packages took their config groups' names
(tests/fixtures/legacy/, made by the code of that time) keep loading: their old `_target_` paths
are mapped, and modules pickled under the old names still import."""
from __future__ import annotations

import importlib
import json
from pathlib import Path
import pickle
import shutil

import torch

from components.legacy import current_name
from components.zoo.bundle import load_bundle, targets, verify_bundle
from pipelines.runtime import build
from pipelines.runtime.worker import LocalSession, run_training

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
OLD = ("components.models", "components.checks", "components.ensembles", "components.schedules", "components.optim.")


def old_names(node) -> list[str]:
    return [value for _, value in targets(node) if str(value).startswith(OLD)]


def test_a_bundle_and_a_checkpoint_written_before_load_and_agree():
    raw = json.loads((LEGACY / "bundle" / "bundle.json").read_text())
    assert old_names(raw["model"]) == ["components.models.MLP"]  # what the fixture holds
    info = verify_bundle(LEGACY / "bundle")  # its manifest still verifies, and what it builds is allowed
    assert info["model"]["_target_"] == "components.model.MLP"
    net, normalizer, _ = load_bundle(LEGACY / "bundle")
    ckpt, ckpt_normalizer, meta = build.model_from_checkpoint(str(LEGACY / "checkpoint"))
    assert not old_names(meta["config"])
    splits = build.load_splits(meta["config"]["data"], meta["config"]["seed"])
    x = normalizer(splits.test.sample().as_float())
    with torch.no_grad():
        assert torch.equal(net(x), ckpt.eval()(ckpt_normalizer(splits.test.sample().as_float())))
        accuracy = float((net(x).argmax(1) == splits.test.sample().y).float().mean())
    assert accuracy > 0.15  # trained (chance is 0.1); the exact value depends on the exported (EMA) weights


def test_a_checkpoint_written_before_resumes_training(tmp_path):
    """Its 1/t schedule (components.schedules then), EMA state (components.ensembles) and
    diagnostics (components.checks) are rebuilt from the mapped config; training goes on."""
    meta = build.model_from_checkpoint(str(LEGACY / "checkpoint"))[2]
    config = {**meta["config"], "trainer": {**meta["config"]["trainer"], "epochs": 3}}
    session = LocalSession(resume_from=str(LEGACY / "checkpoint"))
    run_training(config, session)
    assert [r["epoch"] for r in session.reports] == [3]


def test_run_and_sweep_states_written_before_load(tmp_path):
    from pipelines import tune
    from pipelines.runtime import resume

    state = resume.read(LEGACY / "raysitter_run.json")
    assert not old_names(state["config"]) and "_run" not in state["config"]  # bookkeeping out of the config …
    assert state["context"].run_id == "0123abcd0123abcd0123abcd0123abcd"  # … and into the run's context
    build.scheduler(state["config"]["scheduler"], torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    folder = tmp_path / "sweeps" / "legacy-sweep"
    folder.mkdir(parents=True)
    shutil.copy(LEGACY / "sweep_state.json", folder / "state.json")
    sweep_state, _, resuming = tune.sweep_state({"resume": "legacy-sweep", "output_dir": str(tmp_path)}, {}, [], [])
    assert resuming and not old_names(sweep_state["config"])
    assert sweep_state["config"]["model"]["_target_"] == "components.model.MLP"


def test_modules_pickled_under_the_old_names_still_import():
    """MLflow PyTorch models logged before pickle their classes under the old module paths."""
    assert importlib.import_module("components.models.mlp") is importlib.import_module("components.model.mlp")
    assert current_name("components.schedules.InverseTimeLR") == "components.scheduler.InverseTimeLR"
    from components.scheduler import _InverseTime

    old = pickle.dumps(_InverseTime(0.5), protocol=0).replace(b"components.scheduler", b"components.schedules")
    assert b"components.schedules" in old
    restored = pickle.loads(old)
    assert isinstance(restored, _InverseTime) and restored(2) == 0.5
