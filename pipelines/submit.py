"""`raysitter submit [--address URL] -- PIPELINE …overrides`: run any pipeline as a Ray job.

    raysitter submit -- train trainer.num_workers=2
    raysitter submit --address http://head:8265 --no-wait -- tune search=lr_wd

Goes through Ray's Job Submission SDK: the project folder is shipped as the job's working dir
(without the venv, outputs, stores and git data), the tracking URI and output folder are passed
as environment variables, the job id is printed, its logs are streamed, and the exit status is
the job's (0 SUCCEEDED, 1 FAILED, 130 STOPPED). Ctrl-C detaches; the job keeps running
(`raysitter jobs stop ID` stops it). A cluster with token authentication (Ray's default) is
reached with the token in ~/.ray/auth_token or $RAY_AUTH_TOKEN; nothing here turns it off.
"""
from __future__ import annotations

import argparse
import os
import shlex

from components.tracking import redact
from pipelines.runtime.cluster import EXCLUDES, PROJECT_DIR, check_locally, client, dashboard_address, job_environment, wait_and_report
from pipelines.runtime.commands import PIPELINES
from pipelines.runtime.errors import UserError, report_and_exit


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", default=None, help="the cluster's dashboard, e.g. http://127.0.0.1:8265")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return")
    p.add_argument("--tracking-uri", default=None, help="MLflow store for the job (default: $MLFLOW_TRACKING_URI or OUTPUT_DIR/mlflow.db)")
    p.add_argument("--output-dir", default=os.environ.get("RAYSITTER_OUTPUT_DIR", "outputs"),
                   help="where the job writes checkpoints (must be shared storage on a multi-node cluster)")
    p.add_argument("--submission-id", default=None)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- PIPELINE overrides…")
    return p


def main(argv: list[str] | None = None, prog: str = "raysitter submit") -> int:
    args = parser(prog).parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    plain = {"submit", "jobs", "ui", "server", "zoo"}
    if not command or command[0] not in set(PIPELINES) - plain:
        report_and_exit(UserError("submit", f"needs a pipeline after `--` (got {' '.join(command) or 'nothing'}).",
                                  f"e.g. raysitter submit -- train trainer.num_workers=2 (pipelines: {', '.join(p for p in PIPELINES if p not in plain)})."))
    address = dashboard_address(args.address)
    try:
        check_locally(command)
        jobs = client(address)
    except UserError as e:
        report_and_exit(e)
    env = job_environment(args.tracking_uri, args.output_dir)
    entrypoint = " ".join(shlex.quote(a) for a in ["python", "-m", "pipelines.cli", *command])
    job_id = jobs.submit_job(
        entrypoint=entrypoint,
        submission_id=args.submission_id,
        runtime_env={"working_dir": str(PROJECT_DIR), "excludes": EXCLUDES, "env_vars": env},
        metadata={"raysitter.pipeline": command[0]},
    )
    print(f"submitted {job_id} to {address}: {entrypoint}", flush=True)
    print(f"MLflow store for the job: {redact(env['MLFLOW_TRACKING_URI'])}", flush=True)
    if args.no_wait:
        print(f"follow it with: raysitter jobs logs {job_id} --follow --address {address}")
        return 0
    return wait_and_report(jobs, job_id, address)


if __name__ == "__main__":
    raise SystemExit(main())
