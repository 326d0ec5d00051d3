"""Search spaces, coarse → fine narrowing, and bad search input (no Ray needed)."""
from __future__ import annotations

import math

import pytest

from components.search import Dist, grid_values, narrow, parse_space, set_dotted
from pipelines import tune


def test_narrowing_takes_the_top_k_span_in_log_space_with_a_margin():
    space = {"optimizer.lr": Dist("loguniform", (1e-6, 1.0)), "optimizer.weight_decay": Dist("loguniform", (1e-7, 1e-1))}
    trials = [
        {"optimizer.lr": 1e-3, "optimizer.weight_decay": 1e-5, "val/acc": 0.95},
        {"optimizer.lr": 1e-2, "optimizer.weight_decay": 1e-4, "val/acc": 0.93},
        {"optimizer.lr": 1e-5, "optimizer.weight_decay": 1e-2, "val/acc": 0.40},
        {"optimizer.lr": 0.5, "optimizer.weight_decay": 1e-6, "val/acc": float("nan")},  # diverged: ignored
    ]
    new = narrow(space, trials, "val/acc", "max", top_k=2, margin=0.5)
    lo, hi = new["optimizer.lr"].args
    # top-2 lrs span 1e-3..1e-2 (one decade); a margin of 0.5 × that = half a decade each side
    assert math.log10(lo) == pytest.approx(-3.5) and math.log10(hi) == pytest.approx(-1.5)
    wlo, whi = new["optimizer.weight_decay"].args
    assert math.log10(wlo) == pytest.approx(-5.5) and math.log10(whi) == pytest.approx(-3.5)


def test_narrowing_clips_to_the_original_range_and_handles_min_mode_and_choices():
    space = {"optimizer.lr": Dist("loguniform", (1e-3, 1e-1)), "act": Dist("choice", ("relu", "elu", "tanh")), "width": Dist("uniform", (0.0, 1.0))}
    trials = [
        {"optimizer.lr": 1e-3, "act": "relu", "width": 0.2, "val/loss": 0.1},
        {"optimizer.lr": 2e-3, "act": "elu", "width": 0.3, "val/loss": 0.2},
        {"optimizer.lr": 1e-1, "act": "tanh", "width": 0.9, "val/loss": 2.0},
    ]
    new = narrow(space, trials, "val/loss", "min", top_k=2, margin=0.25)
    assert new["optimizer.lr"].args[0] == 1e-3 and new["optimizer.lr"].args[1] < 1e-2
    assert new["act"].args == ("relu", "elu")
    lo, hi = new["width"].args
    assert 0.0 <= lo < 0.2 and 0.3 < hi < 0.9


@pytest.mark.parametrize(
    "space,message",
    [
        ({"optimizer.lr": {"loguniform": [1e-1, 1e-5]}}, "above high"),
        ({"optimizer.lr": {"loguniform": [0, 1e-1]}}, "positive"),
        ({"optimizer.lr": {"normal": [0, 1]}}, "one of"),
        ({"optimizer.lr": {"randint": [1.5, 3]}}, "whole numbers"),
    ],
)
def test_bad_distributions_are_refused(space, message):
    with pytest.raises(ValueError, match=message):
        parse_space(space)


def test_grid_values_are_log_spaced_for_loguniform():
    assert grid_values(Dist("loguniform", (1e-4, 1e-2)), 3) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert grid_values(Dist("uniform", (0.0, 1.0)), 3) == pytest.approx([0.0, 0.5, 1.0])


def test_nested_and_dotted_spaces_parse_alike():
    nested = parse_space({"optimizer": {"lr": {"loguniform": [1e-4, 1e-2]}}})
    assert nested == parse_space({"optimizer.lr": {"loguniform": [1e-4, 1e-2]}})


def test_set_dotted_copies():
    base = {"optimizer": {"lr": 1.0}}
    assert set_dotted(base, {"optimizer.lr": 2.0}) == {"optimizer": {"lr": 2.0}} and base["optimizer"]["lr"] == 1.0


BAD_SEARCH = [
    (["+search.space.optimizer.momentm={uniform:[0,1]}"], "optimizer.momentm"),
    (["search.space.optimizer.lr={loguniform:[1e-1,1e-5]}"], "above high"),
    (["search.space.optimizer.lr={loguniform:[-1,1e-5]}"], "positive"),
    (["search.scheduler=hyperband"], "search.scheduler"),
    (["resume=no-such-sweep"], "resume"),
]


@pytest.mark.parametrize("overrides,text", BAD_SEARCH, ids=[o[0] for o, _ in BAD_SEARCH])
def test_bad_search_input_exits_2_before_anything_starts(overrides, text, output_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tune.main(["search=smoke", *overrides], prog="raysitter tune")
    assert exit_info.value.code == 2
    assert text in capsys.readouterr().err
    assert not (output_dir / "sweeps").exists() and not (output_dir / "ray_results").exists()


@pytest.mark.parametrize("grace, factor, epochs", [(1, 2, 8), (1, 2, 10), (2, 3, 20), (1, 2.5, 16), (3, 2, 3)])
def test_asha_rungs_are_the_epochs_asha_stops_trials_at(grace, factor, epochs):
    # a trial Tune stops anywhere else was interrupted (its run is labelled so, not early_stopped)
    from ray.tune.schedulers.async_hyperband import _Bracket

    bracket = _Bracket(min_t=grace, max_t=epochs, reduction_factor=factor, s=0)
    asha = sorted({math.ceil(m) for m, _ in bracket._rungs} - {epochs})
    assert tune.asha_rungs({"scheduler": "asha", "grace_period": grace, "reduction_factor": factor}, epochs) == asha
    assert tune.asha_rungs({"scheduler": "none", "grace_period": grace, "reduction_factor": factor}, epochs) == []


def test_ctrl_c_that_tune_catches_interrupts_the_sweep_even_when_the_stage_finished():
    """Tune's own SIGINT handler ends `Tuner.fit` as if the stage were over; a sweep whose last
    trials finished as Ctrl-C came went on to its next stage and exited 0 (seen in CI). Tune's
    advice to resume with `Tuner.restore` is not shown (raysitter's resume is `resume=NAME`)."""
    import logging
    import os
    import signal

    from ray.tune.tune import _setup_signal_catching  # what Tuner.fit installs

    def ours(signum, frame):
        raise AssertionError("Tune's handler should have caught it")

    shown: list[str] = []  # what Ray's own handler would print ("ray" loggers do not propagate)
    tune_log = logging.getLogger("ray.tune.tune")
    catcher = logging.Handler()
    catcher.emit = lambda record: shown.append(record.getMessage())
    tune_log.addHandler(catcher)

    previous = signal.signal(signal.SIGINT, ours)
    try:
        with tune.stop_noticed(2):  # a stage that no one stopped
            _setup_signal_catching()
        assert signal.getsignal(signal.SIGINT) is ours  # Tune's handler does not outlive the stage
        with pytest.raises(KeyboardInterrupt, match="stage 1 stopped"):
            with tune.stop_noticed(1):
                _setup_signal_catching()
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, caught by Tune's handler
                tune_log.warning("Experiment has been interrupted, but the most recent state was saved.\n"
                                 "Resume experiment with: Tuner.restore(path=...)")
                tune_log.warning("a warning of Tune's that stays")
        assert shown[0].startswith("Stop signal received") and shown[1:] == ["a warning of Tune's that stays"]
        assert signal.getsignal(signal.SIGINT) is ours
    finally:
        tune_log.removeHandler(catcher)
        signal.signal(signal.SIGINT, previous)
        if hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)


def test_the_sweep_closes_a_trial_run_as_the_trial_would_even_when_its_last_epoch_lands_meanwhile(tmp_path):
    """Ctrl-C reaches the sweep and its trials at once: the sweep closes the trial runs still
    RUNNING while a trial's own process may be logging its last epoch and closing its run (a
    finished trial ended KILLED without `raysitter.outcome=interrupted`, seen once in CI).
    Both decide by the epochs the run logged; one that logged them all ends FINISHED."""
    from mlflow.tracking import MlflowClient

    from pipelines.runtime import sweep

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("x", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(exp).info.run_id

    def trial(epochs_logged: int | None) -> str:
        run_id = client.create_run(exp, tags={"mlflow.parentRunId": parent}).info.run_id
        if epochs_logged is not None:  # params come before the first epoch
            client.log_param(run_id, "trainer.epochs", "3")
            if epochs_logged:
                client.log_metric(run_id, "epoch", epochs_logged)
        return run_id

    done, cut, unstarted, racing = trial(3), trial(1), trial(None), trial(2)

    class LastEpochLandsMeanwhile(MlflowClient):  # the racing trial logs epoch 3 right after the sweep's read
        def set_terminated(self, run_id, status=None, end_time=None):
            if run_id == racing and status == "KILLED":
                client.log_metric(racing, "epoch", 3)
            return super().set_terminated(run_id, status, end_time)

    closer = LastEpochLandsMeanwhile(client.tracking_uri)
    assert sweep.close_orphans(closer, exp, parent, "interrupted") == 2
    ended = {r: client.get_run(r) for r in (done, cut, unstarted, racing)}
    assert {r: (run.info.status, run.data.tags["raysitter.outcome"]) for r, run in ended.items()} == {
        done: ("FINISHED", "completed"), cut: ("KILLED", "interrupted"),
        unstarted: ("KILLED", "interrupted"), racing: ("FINISHED", "completed"),
    }
    assert sweep.close_orphans(client, exp, parent, "interrupted") == 0  # nothing left RUNNING


def test_resuming_a_sweep_that_finished_is_refused_before_ray_and_one_cut_short_after_its_last_stage_is_not(
        output_dir, compose_train, monkeypatch, capsys):
    """`tune resume=NAME` of a finished sweep started Ray, reopened its MLflow run and logged it
    all again; `train resume=` of a finished run is refused, and so is this now. A sweep whose
    stages are all done but whose run did not end FINISHED (cut short while logging its
    results) still resumes."""
    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf

    from pipelines.runtime import ray_runner, sweep

    config = OmegaConf.to_container(compose_train(["search=smoke"], config_name="tune"), resolve=True)
    config["tracking"]["uri"] = f"sqlite:///{output_dir / 'mlflow.db'}"  # as a sweep's state records its store
    output_dir.mkdir(parents=True)
    client = MlflowClient(config["tracking"]["uri"])
    parent = client.create_run(client.create_experiment("raysitter-tune")).info.run_id
    state = {"name": "done", "config": config, "overrides": ["search=smoke"], "pins": [], "parent_run_id": parent,
             "stages": [{"trials": [], "narrowing": "", "next_space": {}}] * len(config["search"]["stages"])}
    sweep.write_state(output_dir / "sweeps" / "done" / "state.json", state)

    def ray_starts(*args, **kwargs):
        raise SystemExit(99)  # (Hydra would turn an exception into exit 1)

    monkeypatch.setattr(ray_runner, "init_ray", ray_starts)
    client.set_terminated(parent, "KILLED")  # cut short after its last stage: it resumes (here: up to Ray)
    with pytest.raises(SystemExit) as exit_info:
        tune.main(["resume=done"], prog="raysitter tune")
    assert exit_info.value.code == 99
    client.set_terminated(parent, "FINISHED")
    with pytest.raises(SystemExit) as exit_info:
        tune.main(["resume=done"], prog="raysitter tune")
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2 and "error in `resume`: sweep 'done' finished already" in err
    assert "raysitter ensemble sweep=done" in err and client.get_run(parent).info.status == "FINISHED"
