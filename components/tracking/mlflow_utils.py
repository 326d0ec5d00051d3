"""MLflow glue that needs no config: URIs, reachability, tags, flattening, epoch logging."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
import os
from pathlib import Path
import platform
import socket
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING, Any
import urllib.error
import urllib.request

from components.engine.callbacks import Callback

if TYPE_CHECKING:  # MLflow itself is imported where it is used: a driver starts without it
    from mlflow.tracking import MlflowClient


class TrackingUnreachableError(ConnectionError):
    """The MLflow tracking store cannot be reached or created."""


def redact(uri: str | None) -> str:
    """A tracking URI as it may be printed or logged: credentials (`user:secret@`) and a
    `?token=` style query masked."""
    if not uri:
        return str(uri)
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(str(uri))
    if "@" not in parts.netloc and not parts.query:
        return str(uri)  # nothing to hide (and sqlite:////abs/path keeps its slashes)
    netloc = "***@" + parts.netloc.rsplit("@", 1)[1] if "@" in parts.netloc else parts.netloc
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", parts.fragment))


def default_tracking_uri(output_dir: str | os.PathLike) -> str:
    """The embedded store: a SQLite file (the Model Registry needs a database) in the output folder."""
    return f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}"


def create_sqlite_store(uri: str) -> None:
    """Makes a new embedded store (`sqlite:///PATH`, PATH not there yet) from a copy of MLflow's
    empty schema instead of replaying its ~60 schema migrations (≈ 1.2 s less per new store).
    The copy is one MLflow made itself (its own table creation and migrations, no rows), once
    per MLflow and SQLAlchemy version and schema revision, kept in ~/.cache/raysitter ($XDG_CACHE_HOME);
    MLflow checks the revision again when it opens the store and adds its Default experiment
    then. The store appears whole or not at all and never replaces a file: a store someone made
    meanwhile is kept. Where the cache cannot be used, MLflow creates the store as usual."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if path.exists():
        return
    try:
        template = sqlite_schema_template()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}"
        try:
            with open(tmp, "xb") as out, open(template, "rb") as src:  # "x": the umask's mode, like MLflow's
                out.write(src.read())
            os.link(tmp, path)  # fails (and keeps theirs) if another process made the store meanwhile
        finally:
            os.unlink(tmp)
    except Exception:  # no cache (read-only home, full disk), another MLflow: MLflow makes the store itself when it first opens it
        return


def sqlite_schema_template() -> Path:
    """The cached empty MLflow schema for this MLflow version (made here when missing)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.store.db import utils as db_utils
    import sqlalchemy

    revision = db_utils._get_latest_schema_revision()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "raysitter"
    template = cache / f"mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}-schema-{revision}.db"
    if template.exists():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".schema.", suffix=".db")
    os.close(fd)
    try:
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
        try:
            db_utils._initialize_tables(engine)  # what MLflow runs on a new database
            if db_utils._get_schema_version(engine) != revision:
                raise MlflowException(f"the new schema is not at revision {revision}")
        finally:
            engine.dispose()
        os.replace(tmp, template)
    except BaseException:
        os.unlink(tmp)
        raise
    return template


DATABASE_SCHEMES = ("postgresql", "mysql", "mssql", "databricks")  # stores MLflow reaches by itself


DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient", "pymysql": "pymysql"}


def missing_driver(uri: str) -> tuple[str, str] | None:
    """The Python module a database store URI (postgresql://, mysql+pymysql://, …) needs and
    this environment lacks, with the package pip installs it from; None when it has it, or for
    SQLite, files and servers."""
    if "://" not in uri or uri.startswith(("sqlite:", "file:", "http:", "https:", "databricks")):
        return None
    from sqlalchemy.engine import make_url

    try:
        make_url(uri).get_dialect().import_dbapi()
    except ModuleNotFoundError as e:
        return e.name, DRIVER_PACKAGES.get(e.name, e.name)
    except Exception:  # not a database URI SQLAlchemy knows: for MLflow to report
        return None
    return None


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Raises TrackingUnreachableError unless an http(s) server answers /health, an SQLite
    store is an SQLite database (or can be created: checked without creating anything), or
    the URI names another database MLflow supports."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as r:
                if r.status == 200:
                    return
                raise TrackingUnreachableError(f"{redact(uri)}/health answered HTTP {r.status}")
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise TrackingUnreachableError(f"no MLflow server answers at {redact(uri)} ({getattr(e, 'reason', e)})") from e
    elif uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if path.exists():
            if not path.is_file() or path.open("rb").read(16) != b"SQLite format 3\x00":
                raise TrackingUnreachableError(f"{path} exists but is not an SQLite database")
            if not os.access(path, os.W_OK):
                raise TrackingUnreachableError(f"the store {path} is not writable")
            return
        folder = path.parent  # created with the first run: nothing is written before then
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise TrackingUnreachableError(f"cannot create {path}: {folder} is not a writable folder")
    elif not uri.startswith(DATABASE_SCHEMES):
        raise TrackingUnreachableError(
            f"{redact(uri)} is not a tracking store raysitter can use: it needs a database (sqlite:///PATH/mlflow.db, "
            "postgresql://…, mysql://…) or an MLflow server (http://HOST:PORT); a plain folder or file:// store has no "
            "model registry"
        )
    else:
        missing = missing_driver(uri)
        if missing:
            raise TrackingUnreachableError(f"{redact(uri)} needs the database driver `{missing[0]}`, which is not installed here "
                                           f"(pip install '{missing[1]}')")


@contextmanager
def scoped_tracking_uri(uri: str) -> Iterator[None]:
    """mlflow's fluent API pointed at `uri` for a block. `mlflow.set_tracking_uri` also exports
    MLFLOW_TRACKING_URI (so later multirun jobs and child processes would inherit one run's
    store), and mlflow's own scoping unsets it afterwards even when the user had set it: the
    variable is restored here exactly as it was."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


# MLflow 3's UI opens an experiment as a GenAI (traces) page unless told it holds model training.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def racing_insert(write: Callable[[], Any], attempts: int = 4) -> Any:
    """`write()` where another process may write the same row at the same moment (concurrent
    multirun jobs logging one dataset, a sweep closing a trial its own process is closing):
    MLflow's SQL store reads, then inserts, and the loser of that race gets a UNIQUE constraint
    error; a retry finds the row. Any other error is raised at once."""
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            return write()
        except MlflowException as e:
            if attempt == attempts - 1 or "UNIQUE constraint" not in str(e):
                raise
            time.sleep(0.1 * (attempt + 1))


def set_tag(client: MlflowClient, run_id: str, key: str, value: str) -> None:
    """`client.set_tag` for a tag another process may set at the same moment."""
    racing_insert(lambda: client.set_tag(run_id, key, value))


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The experiment's id, creating it (with `artifact_location`, for local stores) if needed,
    marked as a model-training experiment so the UI opens on its runs."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location, tags=EXPERIMENT_KIND)
        except MlflowException:  # another process (a concurrent multirun job) created it first
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    for key, value in EXPERIMENT_KIND.items():
        if key not in exp.tags:
            client.set_experiment_tag(exp.experiment_id, key, value)
    return exp.experiment_id


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} → {"a.b": 1}; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def git_commit(cwd: Path) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def ray_job_submission_id() -> str | None:
    """The Ray job's submission id when this process is a job's driver (`ray job submit`,
    `raysitter submit`): Ray's job supervisor passes it in the driver's environment."""
    import json

    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return None
    try:
        return json.loads(raw).get("metadata", {}).get("job_submission_id")
    except (ValueError, AttributeError):
        return None


SUBMITTED_COMMIT = "RAYSITTER_GIT_COMMIT"  # set by `raysitter submit`: the commit on the submitting side
SUBMITTED_USER = "RAYSITTER_USER"  # … and who submitted


def environment_tags(project_dir: str | os.PathLike, source: str = "raysitter") -> dict[str, str]:
    """git commit, library versions and host: what a result needs to be reproduced; and
    MLflow's own fields for them (`mlflow.source.*`, `mlflow.user`), which its UI shows as the
    run's Source, commit and user. A job submitted to a cluster runs without the .git folder:
    its commit and user come from the submitting side (`raysitter submit` passes them)."""
    import getpass

    commit = os.environ.get(SUBMITTED_COMMIT) or git_commit(Path(project_dir))
    submitted = ray_job_submission_id()
    try:
        user = os.environ.get(SUBMITTED_USER) or getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    tags = {
        "git.commit": commit,
        "host": socket.gethostname(),
        "version.python": platform.python_version(),
        "mlflow.source.name": source,
        "mlflow.source.type": "JOB" if submitted else "LOCAL",
        "mlflow.user": user,
    }
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    if submitted:
        tags["ray.job_submission_id"] = submitted
    for lib in ("raysitter", "torch", "torchvision", "ray", "mlflow", "hydra-core"):
        try:
            tags[f"version.{lib}"] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            tags[f"version.{lib}"] = "not installed"
    return tags


class MlflowEpochLogger(Callback):
    """Logs every epoch's reduced metrics to an existing run (step = epoch). Rank 0 only."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id

    def on_epoch_end(self, loop: Any, epoch: int, metrics: dict[str, float]) -> None:
        self.log(metrics, epoch)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Logs `metrics` at `step` (epoch-level metrics use the epoch, diagnostics the optimizer step)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=batch[i : i + 1000], synchronous=True)


PROGRESS_METRIC = "progress/epoch"  # epochs done, fractional (3.45: 45 % into epoch 4); the driver draws it


class MlflowStepProgress(Callback):
    """Within long epochs, worker 0 reports how far the epoch has come (`progress/epoch`), at
    most every `every_s` seconds and only once an epoch has run `after_s`: the driver (which
    has the terminal; a Ray worker has none) polls it and draws a progress bar. Short epochs
    write nothing."""

    def __init__(self, tracking_uri: str, run_id: str, every_s: float = 2.0, after_s: float = 3.0) -> None:
        from mlflow.tracking import MlflowClient

        self.client, self.run_id = MlflowClient(tracking_uri), run_id
        self.every_s, self.after_s = every_s, after_s
        self.epoch_started = self.last = 0.0
        self.first_step = 0

    def on_fit_start(self, loop: Any) -> None:
        self.epoch_started, self.first_step = time.perf_counter(), loop.step

    def on_step_end(self, loop: Any, step: int, loss: float | None) -> None:
        now = time.perf_counter()
        if now - self.epoch_started < self.after_s or now - self.last < self.every_s:
            return
        import math

        per_worker = max(1, len(loop.train) // max(1, loop.world_size))
        steps = max(1, math.ceil(per_worker / max(1, loop.batch_size)))
        done = min(0.999, (step - self.first_step) / steps)
        self.client.log_metric(self.run_id, PROGRESS_METRIC, (loop.epoch - 1) + done, step=step)
        self.last = now

    def on_epoch_end(self, loop: Any, epoch: int, metrics: dict[str, float]) -> None:
        self.epoch_started, self.first_step = time.perf_counter(), loop.step


class MlflowRunPlots(Callback):
    """What a run page needs to answer "how did it go": augmented training samples at the start
    (`samples/augmented.png`); at the last epoch (before the final report, which may end a Tune
    trial) the loss and accuracy curves, update ratios, activation histograms and the test
    confusion matrix (`plots/`, plus `confusion_matrix.csv`)."""

    def __init__(self, tracking_uri: str, run_id: str, history: Any, diagnostics: Any | None, samples: int = 8, draws: int = 3) -> None:
        from mlflow.tracking import MlflowClient

        self.client, self.run_id = MlflowClient(tracking_uri), run_id
        self.history, self.diagnostics = history, diagnostics
        self.samples, self.draws = samples, draws

    def on_fit_start(self, loop: Any) -> None:
        import torch

        from components.diagnostics import plots
        from components.engine.loop import to_float

        n = min(self.samples, len(loop.train))
        x = to_float(loop.train.x[:n])
        labels = [str(loop.classes[int(y)]) if getattr(loop, "classes", None) else str(int(y)) for y in loop.train.y[:n]]
        with torch.no_grad():
            loop.augment.train()
            draws = [loop.augment(x.clone()) for _ in range(self.draws)]
        with tempfile.TemporaryDirectory() as tmp:
            path = plots.augmented_samples(x, draws, labels, Path(tmp) / "augmented.png")
            self.client.log_artifact(self.run_id, str(path), "samples")

    def on_epoch_end(self, loop: Any, epoch: int, metrics: dict[str, float]) -> None:
        if not loop.is_last(epoch) or metrics.get("diverged"):
            return
        from components.diagnostics import plots

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            paths = []
            epochs = self.history.epochs  # History runs before this callback: it holds this epoch too
            paths += [plots.loss_curves(epochs, out / "loss_curves.png"), plots.accuracy_curves(epochs, out / "accuracy_curves.png")]
            if self.diagnostics is not None and self.diagnostics.ratios:
                paths.append(plots.update_ratios(self.diagnostics.ratios, out / "update_ratios.png"))
            if self.diagnostics is not None and self.diagnostics.histograms:
                paths.append(plots.activation_histograms(self.diagnostics.histograms, out / "activation_histograms.png"))
            classes = [str(c) for c in getattr(loop, "classes", None) or range(int(loop.test.y.max()) + 1 if len(loop.test) else 0)]
            if len(loop.test):
                matrix = confusion(loop, len(classes))
                paths.append(plots.confusion_matrix(matrix, classes, out / "confusion_matrix.png"))
                csv_path = out / "confusion_matrix.csv"
                csv_path.write_text("true\\predicted," + ",".join(classes) + "\n" + "".join(
                    f"{c}," + ",".join(str(int(v)) for v in row) + "\n" for c, row in zip(classes, matrix)))
                self.client.log_artifact(self.run_id, str(csv_path))
            for path in paths:
                self.client.log_artifact(self.run_id, str(path), "plots")


def confusion(loop: Any, num_classes: int) -> Any:
    """Counts of (true, predicted) over the whole test split, on this worker alone."""
    import torch

    from components.engine.loop import to_float

    module = loop.module
    module.eval()
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    with torch.no_grad():
        for start in range(0, len(loop.test), 512):
            pred = module(loop.normalizer(to_float(loop.test.x[start : start + 512]))).argmax(1).cpu()
            true = loop.test.y[start : start + 512].cpu()
            matrix += torch.bincount(true * num_classes + pred, minlength=num_classes * num_classes).view(num_classes, num_classes)
    return matrix
