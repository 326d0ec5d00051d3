"""One MLflow run per job, opened by the driver: params, tags, artifacts, and a status that
always ends FINISHED, FAILED or KILLED (never RUNNING)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
import signal
import tempfile
import threading
from typing import TYPE_CHECKING, Any

import yaml

from components.tracking import create_sqlite_store, ensure_experiment, environment_tags, flatten, redact

if TYPE_CHECKING:  # MLflow is imported where it is used: the driver's fit starts without it
    from mlflow.tracking import MlflowClient

PROJECT_DIR = Path(__file__).resolve().parents[2]  # the project root (pipelines/runtime/ is two below)
MAX_PARAM_LEN = 6000  # MLflow's limit for a param value is 6000 characters


class RunTracker:
    def __init__(self, config: dict[str, Any], run_name: str, tags: dict[str, str], resume_run_id: str | None = None) -> None:
        tracking = config["tracking"]
        self.uri = tracking["uri"]
        self.client, self.experiment_id = open_experiment(self.uri, tracking["experiment"], config["output_dir"])
        if resume_run_id:  # reopen a run an interrupted job left KILLED
            self.client.update_run(resume_run_id, status="RUNNING")
            self.run = self.client.get_run(resume_run_id)
        else:
            source = f"raysitter {tags['pipeline']}" if tags.get("pipeline") else "raysitter"
            self.run = self.client.create_run(
                self.experiment_id, run_name=run_name, tags={**environment_tags(PROJECT_DIR, source), **tags}
            )
        self.run_id = self.run.info.run_id
        self.ended = False

    @property
    def shown(self) -> str:
        """The tracking URI as printed: credentials masked."""
        return redact(self.uri)

    def log_config(self, config: dict[str, Any]) -> None:
        from pipelines.runtime.frozen import thaw

        public = thaw(config)
        if isinstance(public.get("tracking"), dict):  # credentials in a URI are never logged
            public["tracking"] = {**public["tracking"], "uri": redact(public["tracking"].get("uri"))}
        from mlflow.entities import Param

        params = [
            Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in sorted(flatten(public).items())
        ]
        for i in range(0, len(params), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100], synchronous=True)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(yaml.safe_dump(public, sort_keys=False))
            self.client.log_artifact(self.run_id, str(path))

    def log_dataset(self, config: dict[str, Any], name: str, sizes: tuple[int, int, int] | None, classes: int | None = None) -> None:
        """The run's dataset as an MLflow dataset input (the run page's Datasets section): its
        name (the data option), a digest of its config and split sizes, where it comes from,
        and the split sizes in its profile."""
        log_dataset(self.client, self.run_id, config, name, sizes, classes)

    def log_model_summary(self, net: Any) -> None:
        """Parameter count as a param, the module tree as `model_summary.txt`."""
        count = sum(p.numel() for p in net.parameters())
        self.client.log_param(self.run_id, "summary.num_parameters", count)
        self.client.log_text(self.run_id, f"parameters: {count:,}\n\n{net}\n", "model_summary.txt")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for k, v in metrics.items():
            self.client.log_metric(self.run_id, k, float(v), step=step or 0)

    def end(self, status: str) -> None:
        if not self.ended:
            self.client.set_terminated(self.run_id, status)
            self.ended = True

    def ui_hint(self) -> str:
        store = f" --backend-store-uri {self.uri}" if not self.uri.startswith("http") else ""
        base = self.shown if self.uri.startswith("http") else "http://127.0.0.1:5000"
        opener = "" if self.uri.startswith("http") else f"raysitter ui{store}  then open "
        return f"{opener}{base}/#/experiments/{self.experiment_id}/runs/{self.run_id}"


def open_experiment(uri: str, experiment: str, output_dir: str) -> tuple[MlflowClient, str]:
    """A client of the store and the experiment's id; the first run makes an embedded store,
    its artifacts beside it (`OUTPUT_DIR/mlartifacts`, not ./mlruns)."""
    from mlflow.tracking import MlflowClient

    artifact_root = None
    if uri.startswith("sqlite:///"):
        artifact_root = (Path(output_dir) / "mlartifacts").as_uri()
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        create_sqlite_store(uri)
    client = MlflowClient(uri)
    return client, ensure_experiment(client, experiment, artifact_root)


STOPS = (signal.SIGINT, signal.SIGTERM)


def ignore_stops() -> None:
    """From here on, Ctrl-C and SIGTERM (pressed again while a command stops) are ignored in the
    main thread, so they cannot cut short the marking of runs or Ray's shutdown."""
    if threading.current_thread() is threading.main_thread():
        for s in STOPS:
            signal.signal(s, signal.SIG_IGN)


class RunOpening:
    """An MLflow run being opened (`open_run` returns its RunTracker), in a thread of its own
    once `start` is called, so that the driver's seconds of opening it (MLflow's store, the run,
    its params and artifacts) can go beside Ray Train's start instead of before it. `tracker`
    waits for it (starting it if nobody did) and raises what opening it raised."""

    def __init__(self, open_run: Any, *, now: bool = False) -> None:
        self._open, self._thread, self._lock = open_run, None, threading.Lock()
        self.started = threading.Event()
        self._tracker: RunTracker | None = None
        self.error: BaseException | None = None
        if now:  # in this thread, before anything else
            self._thread = threading.current_thread()
            self.started.set()
            self._run()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="raysitter-mlflow-run", daemon=True)
                self._thread.start()
                self.started.set()

    def _run(self) -> None:
        try:
            self._tracker = self._open()
        except BaseException as e:  # handed to whoever asks for the tracker
            self.error = e

    def settle(self) -> RunTracker | None:
        """Waits for the opening to end: the tracker, or None when it failed."""
        self.start()
        if self._thread is not threading.current_thread():
            self._thread.join()
        return self._tracker

    def tracker(self) -> RunTracker:
        tracker = self.settle()
        if tracker is None:
            raise self.error or RuntimeError("the MLflow run was not opened")
        return tracker


@contextmanager
def tracked_run(
    config: dict[str, Any], run_name: str, tags: dict[str, str], resume_run_id: str | None = None
) -> Iterator[RunTracker]:
    """The MLflow run, opened here and now (`tracked_opening` says how it ends)."""
    with tracked_opening(RunOpening(lambda: RunTracker(config, run_name, tags, resume_run_id), now=True)) as opening:
        yield opening.tracker()


@contextmanager
def tracked_opening(opening: RunOpening) -> Iterator[RunOpening]:
    """Ends the run FINISHED on success, KILLED on Ctrl-C/SIGTERM and FAILED on any error (once
    it is open: an ending waits for an opening under way). The first Ctrl-C or SIGTERM raises
    KeyboardInterrupt; more of them (Ctrl-C pressed again) are ignored until the run is marked,
    so they cannot leave it RUNNING, and, unless a multirun goes on with its next job, for as long
    as the command takes to stop."""

    def on_stop(signum: int, frame: Any) -> None:
        ignore_stops()
        raise KeyboardInterrupt(f"signal {signum}")

    in_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, on_stop) for s in STOPS} if in_main else {}
    try:
        yield opening
        opening.tracker().end("FINISHED")
    except KeyboardInterrupt:
        ignore_stops()  # waiting for the opening must not be cut short either
        end_opened(opening, "KILLED")
        from pipelines.runtime.multirun import in_multirun

        if not in_multirun():  # the command stops: Ctrl-C pressed again stays ignored on the way out (not a traceback)
            previous = {}
        raise
    except BaseException:
        end_opened(opening, "FAILED")
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def end_opened(opening: RunOpening, status: str) -> None:
    tracker = opening.settle()
    if tracker is not None:
        tracker.end(status)


def log_dataset(client: MlflowClient, run_id: str, config: dict[str, Any], name: str, sizes: tuple[int, int, int] | None,
                classes: int | None = None) -> None:
    """`RunTracker.log_dataset` for any run (trial runs and study arms are created by client)."""
    import hashlib
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    data = config["data"]
    profile = {"classes": classes, **({"train": sizes[0], "val": sizes[1], "test": sizes[2]} if sizes else {})}
    described = json.dumps({"data": data, "sizes": sizes}, sort_keys=True, default=str)
    dataset = Dataset(
        name=str(name), digest=hashlib.sha256(described.encode()).hexdigest()[:10],
        source_type="local" if data.get("root") else "code",
        source=json.dumps({"uri": data.get("root") or str(data.get("_target_", "?"))}),
        schema=None, profile=json.dumps({k: v for k, v in profile.items() if v is not None}),
    )
    from components.tracking.mlflow_utils import racing_insert

    racing_insert(lambda: client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])]))
