"""Progress the driver draws from what workers report: a Ray worker has no terminal, so worker 0
writes how far a long epoch has come to the run's MLflow metric `progress/epoch`
(components.tracking.MlflowStepProgress), and the driver polls it while Ray Train runs. In a
terminal that is a progress bar under the epoch lines; otherwise a plain line at most every
`plain_every_s` seconds. Runs whose epochs are short report nothing, and nothing is drawn."""
from __future__ import annotations

import sys
import threading
from typing import Any


class EpochProgress:
    """`run`: the run (anything with `uri` and `run_id`, a RunTracker), or the RunOpening still
    opening it (polling starts once it is open)."""

    def __init__(self, run: Any, epochs: int, tty: bool | None = None,
                 poll_s: float = 1.0, plain_every_s: float = 15.0, print_fn: Any = print) -> None:
        self.run, self.epochs = run, epochs
        self.client: Any = None
        self.run_id: str | None = None
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.poll_s, self.plain_every_s, self.print = poll_s, plain_every_s, print_fn
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch, name="raysitter-progress", daemon=True)
        self.bar: Any = None
        self.last_value: float | None = None
        self.last_plain = 0.0

    def __enter__(self) -> EpochProgress:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        if self.bar is not None:
            self.bar.stop()

    def latest(self) -> float | None:
        from components.tracking.mlflow_utils import PROGRESS_METRIC

        try:
            return self.client.get_run(self.run_id).data.metrics.get(PROGRESS_METRIC)
        except Exception:  # the store is busy or briefly unreachable: try again next poll
            return None

    def watch(self) -> None:
        if hasattr(self.run, "settle"):  # a RunOpening: whoever opens it starts it (this thread only waits)
            while not self.run.started.wait(0.2):
                if self.stop.is_set():
                    return
            tracker = self.run.settle()
        else:
            tracker = self.run
        if tracker is None:  # the run could not be opened: nothing to draw
            return
        from mlflow.tracking import MlflowClient

        self.client, self.run_id = MlflowClient(tracker.uri), tracker.run_id
        while not self.stop.wait(self.poll_s):
            value = self.latest()
            if value is None or value == self.last_value:
                continue
            self.last_value = value
            self.show(value)

    def show(self, value: float) -> None:
        import time

        epoch, fraction = int(value) + 1, value - int(value)
        if self.tty:
            if self.bar is None:
                from rich.progress import BarColumn, Progress, TextColumn

                self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                    transient=True, redirect_stdout=True, redirect_stderr=True)
                self.task = self.bar.add_task("", total=1.0)
                self.bar.start()
            self.bar.update(self.task, completed=fraction, description=f"epoch {epoch}/{self.epochs}")
        elif time.monotonic() - self.last_plain >= self.plain_every_s:
            self.last_plain = time.monotonic()
            self.print(f"epoch {epoch:>3}/{self.epochs}  {fraction:.0%} of its steps done", flush=True)


def trial_lines(total: int, metric: str, mode: str) -> Any:
    """A Ray Tune callback (driver side): one line per finished trial, "trials 7/18 done, best
    val/acc 0.9620 so far". Tune pickles its run config with the callback in it, so the callback
    holds plain values only and looks `print` up when it prints."""
    from ray.tune import Callback

    class TrialLines(Callback):
        def __init__(self) -> None:
            self.done, self.best = 0, None

        def note(self, trial: Any, failed: bool = False) -> None:
            self.done += 1
            value = (trial.last_result or {}).get(metric)
            if value is not None and not failed and (self.best is None or (value > self.best if mode == "max" else value < self.best)):
                self.best = value
            best = f", best {metric} {self.best:.4f} so far" if self.best is not None else ""
            print(f"trials {self.done}/{total} done{best}" + (f" ({trial.trial_id} failed)" if failed else ""), flush=True)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.note(trial)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.note(trial, failed=True)

    return TrialLines()
