"""Ray jobs on a cluster, shared by `raysitter submit` and `raysitter jobs`: finding the
cluster's dashboard, a Job Submission client (with token authentication), the job's
environment, following its logs, and the local check of a command line before it is sent."""
from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
import sys
from typing import Any

from components.tracking import default_tracking_uri
from pipelines.runtime.errors import UserError

PROJECT_DIR = Path(__file__).resolve().parents[2]  # the project root (pipelines/runtime/ is two below)
EXCLUDES = [".venv", "venv", "outputs", "mlruns", "mlartifacts", ".git", "**/__pycache__", "*.db", "*.egg-info", ".pytest_cache", "docs/screenshots"]
EXIT = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 130}


def dashboard_address(given: str | None) -> str:
    """--address, else $RAY_API_SERVER_ADDRESS / an http $RAY_ADDRESS, else the local cluster of
    cluster/local/start.sh, else Ray's default dashboard on 127.0.0.1:8265."""
    if given:
        return given.rstrip("/") if given.startswith(("http://", "https://")) else f"http://{given}"
    for candidate in (os.environ.get("RAY_API_SERVER_ADDRESS"), os.environ.get("RAY_ADDRESS")):
        if candidate and candidate.startswith(("http://", "https://")):  # a GCS address (host:port) is not the Jobs API
            return candidate.rstrip("/")
    local = Path(os.environ.get("RAYSITTER_CLUSTER_DIR", "/tmp/raysitter-cluster")) / "dashboard.address"
    if local.exists():
        return local.read_text().strip()
    return "http://127.0.0.1:8265"


def client(address: str) -> Any:
    """A JobSubmissionClient; token authentication is used whenever a token is available."""
    from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
    from ray.job_submission import JobSubmissionClient

    from pipelines.runtime.ray_runner import quiet_token_notice

    quiet_token_notice()
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    # Ray lets RAY_API_SERVER_ADDRESS / RAY_ADDRESS in the environment override the address a
    # client is given; the address raysitter chose (--address first) is the one meant
    saved = {k: os.environ.pop(k) for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS") if k in os.environ}
    try:
        return JobSubmissionClient(address)
    except Exception as e:  # ConnectionError, RuntimeError (auth), ValueError (bad address)
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if refused_for_auth(text, address):
            raise UserError("--address", f"the cluster at {address} refused the request ({text}).",
                            "it uses token authentication: copy the cluster's token to ~/.ray/auth_token or set RAY_AUTH_TOKEN "
                            "(and RAY_AUTH_MODE=token); do not disable authentication on the cluster.") from None
        raise UserError("--address", f"no Ray dashboard answers at {address} ({text}).",
                        "start a cluster (cluster/local/start.sh prints its address) or pass --address http://HEAD:8265.") from None
    finally:
        os.environ.update(saved)


def refused_for_auth(text: str, address: str) -> bool:
    """Whether a connection error is the cluster refusing the credentials (a status 401/403 or
    words about authentication), judged on the message without the address itself: a port such
    as 40383 holds "403" and a host name may hold "auth"."""
    rest = text.replace(address, " ").replace(address.split("://", 1)[-1], " ")
    return bool(re.search(r"\bauth|\btoken\b|\b40[13]\b", rest, re.IGNORECASE))


def job_environment(tracking_uri: str | None, output_dir: str) -> dict[str, str]:
    out = str(Path(output_dir).resolve())
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(out)
    from pipelines.runtime.ray_runner import RAY_ENV

    env = {"MLFLOW_TRACKING_URI": uri, "RAYSITTER_OUTPUT_DIR": out, "PYTHONUNBUFFERED": "1"}
    # raysitter's Ray settings for every process of the job (the driver's ray.init adds none then)
    env.update({k: os.environ.get(k, v or "0.1") for k, v in RAY_ENV.items()})
    # the job's working_dir leaves out .git: its runs' commit (and user) are the submitting side's
    import getpass

    from components.tracking.mlflow_utils import SUBMITTED_COMMIT, SUBMITTED_USER, git_commit

    env[SUBMITTED_COMMIT] = git_commit(PROJECT_DIR)
    try:
        env[SUBMITTED_USER] = getpass.getuser()
    except (KeyError, OSError):
        pass
    return env


async def follow(jobs: Any, job_id: str) -> None:
    async for lines in jobs.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def wait_and_report(jobs: Any, job_id: str, address: str) -> int:
    try:
        asyncio.run(follow(jobs, job_id))
    except KeyboardInterrupt:
        print(f"\nraysitter submit: detached from {job_id}; it keeps running. Stop it with: raysitter jobs stop {job_id} --address {address}",
              file=sys.stderr, flush=True)
        return 130
    status = str(jobs.get_job_status(job_id)).rsplit(".", 1)[-1]
    info = jobs.get_job_info(job_id)
    line = f"job {job_id}: {status}" + (f" ({info.message})" if info.message and status != "SUCCEEDED" else "")
    print(line, file=sys.stderr if status != "SUCCEEDED" else sys.stdout, flush=True)
    return EXIT.get(status, 1)


def check_locally(command: list[str]) -> None:
    """A mistaken command line is refused here, in seconds, not on the cluster: composition,
    declared types, ranges and rules (its data and store are the cluster's to check)."""
    from pipelines.runtime import validate
    from pipelines.runtime.app import CONF_DIR

    name, rest = command[0], command[1:]
    if any(a.startswith("-") for a in rest):  # -m, --cfg, --help: the pipeline's own handling on the cluster
        return
    if name == "study":
        if not rest or not (CONF_DIR / "study" / f"{rest[0]}.yaml").is_file():
            studies = sorted(p.stem for p in (CONF_DIR / "study").glob("*.yaml"))
            raise UserError("study NAME", f"{rest[0] if rest else '(none)'!r} is not a study.", f"use one of: {', '.join(studies)}.")
        name, rest = f"study/{rest[0]}", rest[1:]
    validate.check_command(name, rest)
