"""User-facing errors: one paragraph naming the key and the fix, exit code 2, no traceback."""
from __future__ import annotations

import sys
import textwrap


class UserError(Exception):
    """Bad input the user can fix. `key` is the config key (or CLI argument) at fault."""

    exit_code = 2

    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem, self.fix = key, problem, fix

    def paragraph(self) -> str:
        text = f"raysitter: error in `{self.key}`: {self.problem} Fix: {self.fix}"
        return "\n".join(textwrap.wrap(text, width=100, break_on_hyphens=False, break_long_words=False))


def refuse_artifact(error: Exception) -> None:
    """A bundle or checkpoint that failed verification (tampered, cut short, or naming code that
    is not raysitter's): exit 1, nothing was loaded or run."""
    text = (f"raysitter: refused: {error}. Nothing was loaded or executed. Fix: pull or push the model again from "
            "its source run, or pick another version (raysitter zoo list).")
    print("\n".join(textwrap.wrap(text, width=100, break_on_hyphens=False, break_long_words=False)), file=sys.stderr, flush=True)
    raise SystemExit(1)


def report_and_exit(error: UserError) -> None:
    print(error.paragraph(), file=sys.stderr, flush=True)
    raise SystemExit(error.exit_code)
