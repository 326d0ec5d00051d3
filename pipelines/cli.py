"""`raysitter PIPELINE …overrides`: the first word picks the pipeline, the rest goes to it."""
from __future__ import annotations

import importlib
import sys
from typing import NoReturn

from pipelines.runtime.commands import PIPELINES, USAGE


def main(argv: list[str] | None = None) -> None:
    """The console script (`argv` None) ends through `finish`; called with `argv` (tests, other
    Python code), it raises SystemExit as any function would."""
    if argv is not None:
        dispatch(argv)
        return
    try:
        dispatch(sys.argv[1:])
    except SystemExit as e:
        finish(e.code)
    finish(0)


def finish(code: object) -> NoReturn:
    """Exits as the interpreter would, with everything a normal exit runs first: non-daemon
    threads joined, then the atexit hooks (Ray's shutdown, MLflow's and logging's flushes,
    temporary folders), streams flushed; but without then tearing the interpreter down module by
    module, which with torch, Ray and MLflow loaded took 1.3–1.7 s of every command's end."""
    import atexit
    import os
    import threading

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # SystemExit("message"): printed, status 1, as Python does
        print(code, file=sys.stderr)
        status = 1
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter runs before the atexit hooks
    except Exception:
        pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(status)


def dispatch(args: list[str]) -> None:
    args = list(args)
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
