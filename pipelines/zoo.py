"""`raysitter zoo push|list|pull`: the model zoo on MLflow's Model Registry.

    raysitter zoo push RUN_ID --name digits-mlp [--alias champion]
    raysitter zoo list [NAME]
    raysitter zoo pull digits-mlp@champion [--dest DIR]      # or NAME/VERSION, or NAME (newest)
    raysitter zoo alias digits-mlp 3 champion

The store is --tracking-uri, else $MLFLOW_TRACKING_URI, else the embedded SQLite store in
--output-dir (default ./outputs, or $RAYSITTER_OUTPUT_DIR).
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
import time
from typing import Any

from components.tracking import TrackingUnreachableError, check_reachable, default_tracking_uri, redact
from components.zoo import BundleError
from components.zoo.registry import ZooError, ZooRef
from pipelines.runtime.errors import UserError, refuse_artifact, report_and_exit


def store_uri(tracking_uri: str | None, output_dir: str) -> str:
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(Path(output_dir).resolve())
    try:
        check_reachable(uri)
    except TrackingUnreachableError as e:
        raise UserError("--tracking-uri", f"{e}.", "start the server (raysitter ui) or pass the tracking URI the runs were logged to.") from None
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise UserError("--output-dir", f"there is no MLflow store at {uri} yet.", "train something first (raysitter train), or pass --output-dir / --tracking-uri of an existing store.")
    return uri


def client_for(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri, registry_uri=uri)


def cmd_push(args: argparse.Namespace, uri: str) -> int:
    from components.zoo.registry import push

    version = push(client_for(uri), uri, args.run_id, args.name, args.alias)
    alias = f" (alias {args.alias})" if args.alias else ""
    print(f"pushed run {args.run_id} as {version.name}/{version.version}{alias}")
    print(f"pull it with: raysitter zoo pull {version.name}{'@' + args.alias if args.alias else '/' + str(version.version)}")
    return 0


def cmd_list(args: argparse.Namespace, uri: str) -> int:
    from rich.console import Console
    from rich.table import Table

    from components.zoo.registry import list_versions

    versions = list_versions(client_for(uri), args.name)
    if not versions:
        print(f"the zoo at {redact(uri)} is empty" + (f" for {args.name}" if args.name else "") + "; add a model with raysitter zoo push RUN_ID --name NAME")
        return 0
    table = Table(title=f"model zoo ({redact(uri)})")
    for column in ("name", "version", "aliases", "dataset", "classes", "model", "val/acc", "test/acc", "created", "run"):
        table.add_column(column)
    for v in versions:
        t = v.tags
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(v.creation_timestamp / 1000))
        table.add_row(v.name, str(v.version), ",".join(v.aliases) or "-", t.get("dataset", "?"), t.get("classes", "?"),
                      t.get("model", "?"), t.get("val_acc", "-"), t.get("test_acc", "-"), created, (v.run_id or "")[:8])
    Console(width=160).print(table)
    return 0


def cmd_pull(args: argparse.Namespace, uri: str) -> int:
    from components.zoo.registry import pull, resolve

    ref = ZooRef.parse(args.ref)
    client = client_for(uri)
    version = resolve(client, ref)
    dest = Path(args.dest or Path(args.output_dir) / "zoo" / ref.name / f"v{version.version}").resolve()
    print(f"pulling {ref.name}/{version.version} (run {version.run_id}) …", flush=True)
    # the default folder is raysitter's own cache; a --dest folder is the user's: only ever
    # filled when new or empty, or refreshed when it holds an earlier pull of this bundle
    path, version = pull(client, uri, ZooRef(ref.name, version=str(version.version)), dest, owned=args.dest is None)
    print(f"verified manifest.json against the registry's digest and every sha256 in it; bundle at {path}")
    print(f"fine-tune it with: raysitter finetune zoo={ref} data=…")
    return 0


def cmd_alias(args: argparse.Namespace, uri: str) -> int:
    from components.zoo.registry import alias_problem, resolve

    problem = alias_problem(args.alias)
    if problem:
        raise ZooError(problem, "pick another alias, e.g. champion.")
    client = client_for(uri)
    version = resolve(client, ZooRef(args.name, version=str(args.version)))
    client.set_registered_model_alias(args.name, args.alias, version.version)
    print(f"{args.name}@{args.alias} → version {version.version}")
    return 0


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI or OUTPUT_DIR/mlflow.db)")
    p.add_argument("--output-dir", default=os.environ.get("RAYSITTER_OUTPUT_DIR", "outputs"))
    sub = p.add_subparsers(dest="command", required=True)
    push = sub.add_parser("push", help="register a run's bundle as a new version")
    push.add_argument("run_id")
    push.add_argument("--name", required=True)
    push.add_argument("--alias", default=None, help="e.g. champion")
    ls = sub.add_parser("list", help="name, version, aliases, dataset, classes, accuracy, created")
    ls.add_argument("name", nargs="?")
    pull = sub.add_parser("pull", help="download and verify a bundle")
    pull.add_argument("ref", help="NAME, NAME@ALIAS or NAME/VERSION")
    pull.add_argument("--dest", default=None, help="default: OUTPUT_DIR/zoo/NAME/vVERSION")
    alias = sub.add_parser("alias", help="point an alias at a version")
    alias.add_argument("name")
    alias.add_argument("version", type=int)
    alias.add_argument("alias")
    return p


COMMANDS = {"push": cmd_push, "list": cmd_list, "pull": cmd_pull, "alias": cmd_alias}


def main(argv: list[str] | None = None, prog: str = "raysitter zoo") -> int:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    args = parser(prog).parse_args(argv)
    try:
        uri = store_uri(args.tracking_uri, args.output_dir)
        return COMMANDS[args.command](args, uri)
    except UserError as e:
        report_and_exit(e)
    except ZooError as e:
        report_and_exit(UserError(f"zoo {args.command}", f"{e}.", e.fix or "check the name with `raysitter zoo list` (and the run id in the MLflow UI)."))
    except BundleError as e:
        refuse_artifact(e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
