"""`raysitter jobs list|logs|stop`: the Ray jobs of a cluster (see `raysitter submit`).

    raysitter jobs list [--address URL]
    raysitter jobs logs JOB_ID [--follow]
    raysitter jobs stop JOB_ID
"""
from __future__ import annotations

import argparse
import asyncio
import time

from pipelines.runtime.errors import UserError, report_and_exit
from pipelines.runtime.cluster import client, dashboard_address, follow


def main(argv: list[str] | None = None, prog: str = "raysitter jobs") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", default=None, help="the cluster's dashboard, e.g. http://127.0.0.1:8265")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every job: id, status, pipeline, start, entrypoint")
    logs = sub.add_parser("logs", help="a job's output")
    logs.add_argument("job_id")
    logs.add_argument("--follow", action="store_true", help="stream until the job ends")
    stop = sub.add_parser("stop", help="stop a running job")
    stop.add_argument("job_id")
    args = p.parse_args(argv)
    address = dashboard_address(args.address)
    try:
        jobs = client(address)
        if args.command == "list":
            rows = sorted(jobs.list_jobs(), key=lambda j: j.start_time or 0)
            if not rows:
                print(f"no jobs on {address}")
            for j in rows:
                started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((j.start_time or 0) / 1000))
                status = str(j.status).rsplit(".", 1)[-1]
                print(f"{j.submission_id or j.job_id:<28} {status:<10} {started}  {j.entrypoint}")
            return 0
        known = {j.submission_id for j in jobs.list_jobs()}
        if args.job_id not in known:
            raise UserError("JOB_ID", f"{args.job_id!r} is not a job of {address}.", "list them with `raysitter jobs list`.")
        if args.command == "logs":
            if args.follow:
                asyncio.run(follow(jobs, args.job_id))
            else:
                print(jobs.get_job_logs(args.job_id), end="")
            return 0
        stopped = jobs.stop_job(args.job_id)
        print(f"{args.job_id}: {'stopping' if stopped else 'already finished'}")
        return 0
    except UserError as e:
        report_and_exit(e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
