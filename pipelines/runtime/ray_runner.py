"""Starting (or joining) Ray and running the per-worker function under a TorchTrainer (Train V2)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
import logging
import os
from pathlib import Path
from typing import Any

RAY_ENV = {
    # Ray Train V2 collects reports at this interval; its 2 s default makes a per-epoch report
    # cost up to 2 s (STACK_NOTES: 65 s → 26 s for 20 digits epochs at 0.1 s).
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": None,  # filled from trainer.report_interval_s
    "RAY_TRAIN_V2_ENABLED": "1",
    "RAY_DEDUP_LOGS": "0",
    # Train V2 routes print() through its logger *and* the original stream: lines came out twice.
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
}


def ray_logs_wanted() -> bool:
    """RAYSITTER_RAY_LOGS=1 brings back Ray's internal notices that raysitter silences."""
    return os.environ.get("RAYSITTER_RAY_LOGS", "").lower() in ("1", "true", "yes")


def ray_env(trainer: dict[str, Any]) -> dict[str, str]:
    env = dict(RAY_ENV)
    env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = str(trainer.get("report_interval_s", 0.1))
    return env


def quiet_token_notice() -> None:
    """Token authentication stays on (Ray's default); Ray's notice that it is on says nothing to
    act on, so its logger is raised to ERROR (unless RAYSITTER_RAY_LOGS=1)."""
    if not ray_logs_wanted():
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_env_vars() -> dict[str, str]:
    """The env_vars of the Ray job this driver runs in (`ray job submit`, `raysitter submit`)."""
    import json

    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return {}
    try:
        return dict((json.loads(raw).get("runtime_env") or {}).get("env_vars") or {})
    except (ValueError, AttributeError):
        return {}


def running_local_ray() -> tuple[str, str] | None:
    """(address, what started it) of a Ray running on this machine that raysitter may join: the
    cluster of cluster/local/start.sh, else the head of the last `ray start --head` (Ray's record
    in /tmp/ray/ray_current_cluster). A record whose address does not answer (a head stopped with
    a signal leaves it behind) is passed over: joining it would wait on a dead address."""
    import socket

    candidates = []
    local = Path(os.environ.get("RAYSITTER_CLUSTER_DIR", "/tmp/raysitter-cluster")) / "head.address"
    if local.is_file():
        candidates.append((local.read_text().strip(), "cluster/local/start.sh"))
    try:
        from ray._private.utils import read_ray_address

        recorded = read_ray_address()
    except Exception:  # Ray's private helper moved or the record is unreadable: nothing to join
        recorded = None
    if recorded:
        candidates.append((recorded, "ray start --head"))
    for address, source in candidates:
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1):
                return address, source
        except (OSError, ValueError):
            continue
    return None


def resolve_address(trainer: dict[str, Any]) -> str:
    """`trainer.address` (RAY_ADDRESS) as given; unset: a running local Ray, said so, else
    "local" (Ray's word for a new instance of this process's own)."""
    address = trainer.get("address") or None
    if address is not None:
        return str(address)
    found = running_local_ray()
    if found is None:
        return "local"
    print(f"raysitter: using the running local Ray at {found[0]} (started by {found[1]}); trainer.address=local "
          "(or RAY_ADDRESS=local) starts one of this command's own", flush=True)
    # Ray's clients present the head's token (~/.ray/auth_token) only when told to
    from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available

    quiet_token_notice()
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    return found[0]


_OWN_RAY: dict[str, Any] = {}  # "keeper": the RayStart whose thread started this process's Ray; "gcs": its address
# set in the processes of a Ray that a raysitter command started on its machine (one node, no autoscaler)
OWN_RAY_ENV = "RAYSITTER_RAY_STARTED_HERE"


def on_ray_started_here() -> bool:
    """Whether this process runs on a Ray that a raysitter command started (`trainer.address`
    unset or "local"): one node of fixed resources, with no autoscaler to ask for more."""
    import ray

    if os.environ.get(OWN_RAY_ENV) == "1":  # a process of that Ray's job (a Tune trial, a launcher's job)
        return True
    return ray.is_initialized() and _OWN_RAY.get("gcs") == ray.get_runtime_context().gcs_address


def init_ray(trainer: dict[str, Any], one_fit: bool = False, decided: Callable[[str], None] | None = None) -> bool:
    """Joins `trainer.address` (or RAY_ADDRESS) when set, else a running local Ray (said so),
    else starts a quiet local Ray of its own. `one_fit`: the command runs a single Ray Train fit
    and nothing after it needs Ray (`fit`), so a Ray of its own starts without its dashboard
    (see `raysitter_trainer`). Returns whether it started a Ray of its own."""
    import ray

    env = ray_env(trainer)
    os.environ.update(env)  # a local Ray's processes inherit the driver's environment
    if ray.is_initialized():
        return False
    address = resolve_address(trainer)
    if decided is not None:  # tells RayStart whether a Ray of this command's own is coming up
        decided(address)
    # Inside a submitted job, Ray refuses a ray.init runtime_env that repeats a key of the job's
    # own; the job's values (what `raysitter submit` set) win.
    taken = job_env_vars()
    own = {k: v for k, v in env.items() if k not in taken}
    kwargs: dict[str, Any] = dict(
        logging_config=ray.LoggingConfig(encoding="TEXT", log_level="WARNING"),
        configure_logging=True,
        logging_level=logging.WARNING,
        log_to_driver=True,
    )
    if address == "local" and one_fit:
        # the dashboard (≈ 1 s and several CPU-seconds to start, on a machine the fit needs) serves
        # only Ray Train's placement-group cleaner here, which one fit does without
        kwargs["include_dashboard"] = False
    elif address == "local":
        kwargs["include_dashboard"] = True
        kwargs["dashboard_host"] = "127.0.0.1"
        # Ray Train's state lookups (its placement-group cleaner) find "the" local Ray by scanning
        # for running instances and fail when there are several (another raysitter, a cluster):
        # name this one's API server in every process of the job.
        # (the job's processes only: in this process the variable would outlive this Ray and
        # redirect a later Job Submission client, which prefers it to the address it is given)
        kwargs["dashboard_port"] = free_port()
        own["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{kwargs['dashboard_port']}"
    if address == "local":
        own[OWN_RAY_ENV] = "1"
        # Ray starts an idle worker per CPU for the first driver; Ray Train's and Tune's actors
        # each start a process of their own anyway (≈ 2.5 CPU-seconds less per cold command on 2 cores)
        kwargs["_system_config"] = {"prestart_worker_first_driver": False}
    elif address != "auto" and "://" not in address and "RAY_ADDRESS" not in taken:
        # Joining a Ray by its address: the job's processes are told it too. Ray Train's state
        # lookups (its placement-group cleaner) otherwise look for "the" Ray on their machine
        # and fail, with a traceback in the terminal, when several run there.
        own.setdefault("RAY_ADDRESS", address)
    kwargs["runtime_env"] = {"env_vars": own} if own else None
    quiet_token_notice()
    with own_sigterm_handler():
        ray.init(address=address, **kwargs)
    if address == "local":
        _OWN_RAY["gcs"] = ray.get_runtime_context().gcs_address
    for name in ("ray", "ray.train", "ray.tune", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return address == "local"


class RayStart:
    """`init_ray` in a thread of its own, started as soon as a command knows it will train: the
    driver imports Ray Train and opens its MLflow run meanwhile (Ray's processes take seconds to
    come up). `wait` returns once Ray is up and raises what `init_ray` raised.

    A Ray this thread starts lives as long as the thread: Ray starts its processes to be killed
    when their parent dies, and Linux counts the starting *thread* as the parent. So the thread
    stays (parked) until told to stop that Ray (`release_own_ray`, or the process's exit), and
    stops it itself."""

    def __init__(self, trainer: dict[str, Any], one_fit: bool = False) -> None:
        import threading

        self.error: BaseException | None = None
        self.ready, self.stop = threading.Event(), threading.Event()
        self.decided, self.own = threading.Event(), False  # whether it starts a Ray of its own, once known
        self.thread = threading.Thread(target=self._run, args=(trainer, one_fit), name="raysitter-ray", daemon=True)
        self.thread.start()

    def _run(self, trainer: dict[str, Any], one_fit: bool) -> None:
        import atexit

        # Ray notes that it sets no SIGTERM handler outside the main thread: raysitter's own
        # handler (tracked_run) is the one wanted anyway
        worker_log = logging.getLogger("ray._private.worker")
        level = worker_log.level
        worker_log.setLevel(logging.ERROR)
        try:
            started = init_ray(trainer, one_fit, decided=self._decided)
            if started:
                _OWN_RAY["keeper"] = self
                atexit.register(self.release)  # after Ray's own exit hook, so it runs before it
        except BaseException as e:  # handed to the thread that waits
            self.error = e
            return
        finally:
            worker_log.setLevel(level)
            self.decided.set()
            self.ready.set()
        if not started:  # joined a Ray (or one was up already): nothing here dies with this thread
            return
        self.stop.wait()
        import ray

        ray.shutdown()

    def _decided(self, address: str) -> None:
        self.own = address == "local"
        self.decided.set()

    def starting_own(self) -> bool:
        """Whether a Ray of this command's own is still coming up (seconds: the driver is free
        meanwhile); joining a running one takes a moment."""
        self.decided.wait()
        return self.own and not self.ready.is_set()

    def wait(self) -> None:
        self.ready.wait()
        if self.error is not None:
            raise self.error

    def release(self, wait: bool = True) -> None:
        """Stops the Ray this thread started (waits for it unless `wait` is false)."""
        self.stop.set()
        if wait:
            self.thread.join(timeout=60)


@contextmanager
def own_sigterm_handler() -> Iterator[None]:
    """ray.init replaces the driver's SIGTERM handler with one that exits at once (status 1), so
    the MLflow run would end FAILED, not KILLED. A handler raysitter set (`tracked_run`) goes back
    in place; Ray's processes are still stopped by its exit hook."""
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    ours = signal.getsignal(signal.SIGTERM) if main else None
    yield
    if callable(ours):
        signal.signal(signal.SIGTERM, ours)


def make_trainer(config: dict[str, Any], context: Any, run_name: str, storage_path: str | None = None,
                 callbacks: list | None = None, one_fit: bool = False) -> Any:
    """A TorchTrainer running `pipelines.runtime.worker.train_worker` on `trainer.num_workers` DDP
    workers; each gets the config and, beside it, the run's context (pipelines.runtime.context).
    `one_fit`: this fit is its driver's last use of Ray (see `raysitter_trainer`)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from pipelines.runtime.worker import train_worker, worker_payload

    from pipelines.runtime.storage import ray_storage

    t = config["trainer"]
    storage, filesystem = (storage_path, None) if storage_path else ray_storage(config)
    trainer = raysitter_trainer(TorchTrainer)(
        train_worker,
        train_loop_config=worker_payload(config, context),
        torch_config=torch_config(t),
        scaling_config=ray.train.ScalingConfig(
            num_workers=t["num_workers"], use_gpu=t["use_gpu"], resources_per_worker=dict(t["resources_per_worker"]),
            placement_strategy=t.get("placement_strategy", "PACK"),
        ),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=storage, storage_filesystem=filesystem,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=t["checkpoints_to_keep"]),
            failure_config=ray.train.FailureConfig(max_failures=t["max_failures"]),
            logging_config=ray.train.LoggingConfig(log_level=t.get("log_level", "WARNING")),
            callbacks=callbacks or [],
        ),
    )
    trainer._raysitter_one_fit = one_fit
    return trainer


def torch_config(trainer: dict[str, Any]) -> Any:
    """The TorchTrainer's `torch_config`: Ray's TorchConfig (a torch.distributed process group
    across the workers), except for one worker on the CPU, which gets no process group. Ray's
    TorchConfig would give the lone worker a gloo group of one (which nothing here uses: the loop
    reduces over workers only when a group exists, `prepare_model` wraps in DDP only above one
    worker), and, because its module imports torch at the top, makes the Ray Train controller
    import torch (≈ 2 s of a fit's start on 2 cores) just to unpickle it; ours lives in a module
    without torch (`pipelines.runtime.ray_backend`)."""
    if trainer["num_workers"] == 1 and not trainer["use_gpu"]:
        from pipelines.runtime.ray_backend import OneCpuWorkerConfig

        return OneCpuWorkerConfig()
    from ray.train.torch import TorchConfig

    return TorchConfig(backend="nccl" if trainer["use_gpu"] else "gloo")


_TRAINERS: dict[type, type] = {}


def raysitter_trainer(trainer_cls: type) -> type:
    """`trainer_cls` with these changes (most of them to Ray Train's private parts; under a Ray
    without them, they change nothing):
    - Ctrl-C is left to raysitter. Ray Train's driver answers the first SIGINT by asking its
      controller to abort and then exits with status 1 (its own comment says it meant 0); the
      run would end FAILED, with no resume hint, and with a terminal's Ctrl-C reaching a Ray of
      the command's own at the same moment, the abort itself fails. Without its handler
      (`_register_sigint_handler`), Ctrl-C is a KeyboardInterrupt in the driver, as SIGTERM is
      (`tracked_run`): the worker group is aborted (`abort`), what its processes print from then
      on is no longer shown (`worker_logs`), the MLflow run ends KILLED, the
      checkpoints stay, and the command prints how to resume (exit 130).
    - No Ray Datasets, no datasets manager. Ray Train starts a `DatasetManager` actor (a Python
      process of its own, ≈ 1.5 CPU-s) at every worker-group start even when the trainer was
      given no datasets, as raysitter's never are (each worker loads its own data); its
      callback (`DatasetsCallback`, from `_create_default_callbacks`) is left out then.
    - No preemption watcher on a Ray of one node (`fit`): Ray Train's `PreemptionWatcher`
      (another actor process per worker-group start, polling every 5 s, and an error-level
      note from Ray's core in the terminal when it starts) warns the workers of a node being
      drained, spot instances above all; on a Ray of one node, the one the driver runs on,
      there is no other node to move to. On a cluster of two or more nodes it stays on, and
      RAY_TRAIN_ENABLE_PREEMPTION_WATCHER set by the user always wins.
    - No placement-group cleaner for a driver's one fit (`make_trainer(one_fit=True)`: `train`
      and `finetune` outside a multirun). Ray Train starts it (a detached actor process asking
      the dashboard every second whether the controller lives) to free the workers' placement
      group should the controller die while its driver goes on to other work. A placement
      group lives at most as long as the driver's job, and this driver ends right after its
      fit; multirun jobs, sweep trials and notebooks keep the cleaner.
    - No autoscaling coordinator on a Ray a raysitter command started (`on_ray_started_here`):
      see `ray_backend.FixedRayScalingPolicy`. A Ray given by address may have an autoscaler
      (a cloud cluster's head, even with one node up), and keeps Ray's policy."""
    if trainer_cls not in _TRAINERS:
        def default_callbacks(self):
            drop = set() if self.datasets else {"DatasetsCallback"}
            if getattr(self, "_raysitter_one_fit", False):
                drop.add("PlacementGroupCleanerCallback")
            return [c for c in trainer_cls._create_default_callbacks(self) if type(c).__name__ not in drop]

        def keep_controller(self, controller):  # instead of Ray Train's SIGINT handler
            self._raysitter_controller = controller

        def run_controller(self, **kwargs):
            from ray.train.v2._internal.execution.scaling_policy import FixedScalingPolicy

            if type(kwargs.get("scaling_policy")) is FixedScalingPolicy and on_ray_started_here():
                from pipelines.runtime.ray_backend import FixedRayScalingPolicy

                kwargs["scaling_policy"] = FixedRayScalingPolicy(self.scaling_config)
            return trainer_cls._initialize_and_run_controller(self, **kwargs)

        def fit(self):
            worker_logs(shown=True)  # a multirun's next job after an interrupted one
            with preemption_watcher_only_on_clusters():
                try:
                    return trainer_cls.fit(self)
                except KeyboardInterrupt:
                    worker_logs(shown=ray_logs_wanted())
                    abort(getattr(self, "_raysitter_controller", None))
                    raise

        _TRAINERS[trainer_cls] = type(trainer_cls.__name__, (trainer_cls,), {
            "__module__": trainer_cls.__module__,
            "__doc__": trainer_cls.__doc__,
            "_register_sigint_handler": keep_controller,
            "_create_default_callbacks": default_callbacks,
            "_initialize_and_run_controller": run_controller,
            "fit": fit,
        })
    return _TRAINERS[trainer_cls]


_MUTED: list[tuple[str, Any]] = []  # Ray's handlers that print its processes' output here, while muted


def worker_logs(shown: bool) -> None:
    """Whether the output of Ray's processes (forwarded to the driver: `log_to_driver`) is
    printed. Muted once a fit is interrupted: what its processes print then is their end seen from
    inside (workers finding their controller gone, the controller timing out on a Ray the same
    Ctrl-C stops, each with a traceback), while raysitter says how the run ended and how to resume
    it. RAYSITTER_RAY_LOGS=1 keeps it."""
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    with dispatcher._lock:
        if not shown:
            _MUTED.extend(pair for pair in dispatcher.handlers if pair[0] == "ray_print_logs")
            dispatcher.handlers = [pair for pair in dispatcher.handlers if pair[0] != "ray_print_logs"]
        elif _MUTED:
            if not any(name == "ray_print_logs" for name, _ in dispatcher.handlers):  # not added again by a new ray.init
                dispatcher.handlers = [*dispatcher.handlers, _MUTED[0]]
            _MUTED.clear()


def abort(controller: Any) -> None:
    """Stops an interrupted run's workers as Ray Train's own Ctrl-C does (the controller's
    `abort`: the worker group killed, the run ABORTED), before the driver goes on to mark its
    MLflow run KILLED. Without it, a driver interrupted on a Ray that goes on running (a
    cancelled ray-launcher job, a command on a warm Ray) left its workers to find their
    controller gone, each printing "Error in training function" with a traceback. Best effort,
    at most 15 s: a Ray stopped by the same Ctrl-C has nothing left to abort."""
    if controller is None:
        return
    import ray

    try:
        ray.get(controller.abort.remote(), timeout=15)
    except Exception:  # the controller exits as it aborts (RayActorError), or is gone already
        pass


PREEMPTION_WATCHER = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"  # read by Ray Train's controller, passed on from the driver


@contextmanager
def preemption_watcher_only_on_clusters() -> Iterator[None]:
    """Ray Train's preemption watcher off for a fit on a Ray of one node (unless the user set
    RAY_TRAIN_ENABLE_PREEMPTION_WATCHER); the environment as it was afterwards."""
    import ray

    if PREEMPTION_WATCHER in os.environ:
        yield
        return
    try:
        one_node = sum(1 for n in ray.nodes() if n.get("Alive")) == 1
    except Exception:  # no answer from the GCS: leave Ray Train's default
        one_node = False
    if one_node:
        os.environ[PREEMPTION_WATCHER] = "0"
    try:
        yield
    finally:
        if one_node:
            os.environ.pop(PREEMPTION_WATCHER, None)


def fit(config: dict[str, Any], context: Any, run_name: str, one_fit: bool = False,
        beside: Callable[[], None] | None = None, ray_start: RayStart | None = None) -> Any:
    """Starts or joins Ray (or waits for `ray_start` to), trains, and returns Ray's Result.
    `one_fit`: the command's only fit (not a multirun job): a Ray this process started is
    stopped as soon as the fit ends, in the background (`release_own_ray`), while the driver
    logs the result. `beside`: the driver's own work that need not come before the fit, run in a
    thread of its own from the moment the driver has nothing else to do: while it waits for a
    Ray still starting, else as the fit starts (Ray Train's controller and workers take seconds
    to start, in processes of their own, while this one waits on them)."""
    work = Beside(beside)
    if ray_start is not None:
        if ray_start.starting_own():
            work.start()
        trainer_modules()  # what make_trainer imports, while Ray comes up
        ray_start.wait()
    else:
        init_ray(config["trainer"], one_fit)
    trainer = make_trainer(config, context, run_name, one_fit=one_fit)
    work.start()  # the fit's start in this thread is a moment's work; then it waits on the controller
    try:
        result = trainer.fit()
    except Exception:
        forget_announced(context)
        raise
    forget_announced(context)
    if one_fit:
        release_own_ray()
    return result


def forget_announced(context: Any) -> None:
    """The run id announced to worker 0 (announce.py) is needed no more once the fit is over
    (not after a Ctrl-C: the Ray it is in may be stopping)."""
    key = getattr(context, "announced_as", None)
    if key:
        from pipelines.runtime.announce import forget

        forget(key)


class Beside:
    """`fit`'s `beside` work: started once, in a thread of its own."""

    def __init__(self, work: Callable[[], None] | None) -> None:
        self.work, self.started = work, False

    def start(self) -> None:
        import threading

        if self.work is not None and not self.started:
            self.started = True
            threading.Thread(target=self.run, name="raysitter-beside", daemon=True).start()

    def run(self) -> None:
        # Ray runs its worker processes at nice 15: at the driver's nice 0 this thread would take
        # the cores from the controller and workers starting up, which are what the fit waits for
        lowest_priority_thread()
        self.work()


def lowest_priority_thread() -> None:
    """This thread (a Linux task of its own) at nice 19, where the platform allows it."""
    import threading

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


def trainer_modules() -> None:
    """Imports what `make_trainer` needs (≈ 1 s of a driver's start on 2 cores)."""
    import importlib

    for module in ("ray.train.torch", "pipelines.runtime.storage", "pipelines.runtime.worker"):
        importlib.import_module(module)


def release_own_ray() -> None:
    """Stops the Ray this process started for its one fit (`RayStart`'s thread does, while the
    driver goes on logging; the exit hooks wait for it), instead of Ray's exit hook, which first
    pauses half a second for worker logs that have all arrived once a fit has returned. A Ray it
    joined is left as is."""
    keeper = _OWN_RAY.pop("keeper", None)
    if keeper is not None:
        keeper.release(wait=False)
