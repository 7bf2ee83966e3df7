"""Shared command-line plumbing: user errors become one line on stderr and exit status 2.

The analysis commands are run by people on run directories that may be
missing, empty or still growing; a traceback would bury the one fact they
need (which path, which flag), so every error a user can cause is a
`UserError` (or a `RunError` from loading) caught here.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn, Sequence

from .load import RunError, check_objectives


class UserError(ValueError):
    """A bad flag or an impossible request (e.g. a budget no trial meets)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would print the whole usage
        raise UserError(message)


def parse_objectives(values: Sequence[str] | None) -> list[str] | None:
    """`--objectives val_acc,macs` or `--objectives val_acc macs`; None when not given."""
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    try:
        return check_objectives(names)
    except ValueError as exc:
        raise UserError(f"--objectives: {exc}") from None


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None,
             prog: str = "analysis") -> int:
    """Call `main`; turn user errors into `<prog>: error: <one line>` and status 2."""
    try:
        return main(argv)
    except (UserError, RunError) as exc:
        message = " ".join(str(exc).split())
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
