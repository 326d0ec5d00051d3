"""The MLflow run id, from the driver to worker 0, for a run whose driver opens its MLflow run
beside the start of the fit rather than before it (`training.train`): Ray Train's controller
and workers take seconds to start, and opening the run (MLflow's store, the run, its params)
takes seconds of the driver's time that need not come first. The driver announces the run id
(or why it could not open the run) in Ray's key-value store under the run's storage key, and
worker 0 waits for it before its first MLflow write (`worker.announced_run`). This module
imports neither torch nor MLflow."""
from __future__ import annotations

import time

NAMESPACE = "raysitter"
FAILED = b"!"  # prefix of a failure's message in place of a run id


def _key(key: str) -> bytes:
    return f"run/{key}".encode()


def publish(key: str, run_id: str) -> None:
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(_key(key), run_id.encode(), overwrite=True, namespace=NAMESPACE)


def publish_failure(key: str, message: str) -> None:
    """Worker 0 stops waiting and fails with `message` (the driver reports the cause itself)."""
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(_key(key), FAILED + message.encode(), overwrite=True, namespace=NAMESPACE)


def forget(key: str) -> None:
    """Drops the announcement once the fit is over (best effort: Ray may be stopping)."""
    try:
        from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_initialized

        if _internal_kv_initialized():
            _internal_kv_del(_key(key), namespace=NAMESPACE)
    except Exception:
        pass


class NotAnnounced(RuntimeError):
    pass


def wait(key: str, timeout_s: float = 600.0, poll_s: float = 0.05) -> str:
    """The run id the driver announced for `key`; raises NotAnnounced with the driver's reason
    when it could not open the run, or after `timeout_s` without an answer."""
    from ray.experimental.internal_kv import _internal_kv_get

    deadline = time.monotonic() + timeout_s
    while True:
        value = _internal_kv_get(_key(key), namespace=NAMESPACE)
        if value:
            if value.startswith(FAILED):
                raise NotAnnounced(value[len(FAILED):].decode(errors="replace"))
            return value.decode()
        if time.monotonic() > deadline:
            raise NotAnnounced(f"the driver announced no MLflow run for {key!r} within {timeout_s:.0f} s")
        time.sleep(poll_s)
