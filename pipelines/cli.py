"""`raysitter PIPELINE …overrides`: the first word picks the pipeline, the rest goes to it."""
from __future__ import annotations

import importlib
import sys

from pipelines.runtime.commands import PIPELINES, USAGE


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        raise SystemExit(0 if args else 2)
    name, rest = args[0], args[1:]
    if name not in PIPELINES:
        print(f"raysitter: unknown pipeline {name!r}. Fix: use one of {', '.join(PIPELINES)}.\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(PIPELINES[name][0])
    result = module.main(rest, prog=f"raysitter {name}")
    raise SystemExit(0 if result is None or not isinstance(result, int) else result)


if __name__ == "__main__":
    main()
