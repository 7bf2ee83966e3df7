"""The one command-line kit every `python -m ...` of this project uses.

A user error (a bad flag, a missing file, a malformed config, an impossible
request) costs the user one line on stderr and exit status 2 — never a
traceback and never argparse's whole usage dump.  Every package raises
`UserError` (or a subclass of it) for such errors and every CLI runs its
`main` through `run_main`, so the rule lives here once.

It sits below every package (`space`, `trainer`, `record`, `search`,
`analysis` all import it) and imports nothing of ours, so raising a user
error never means importing the model package.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Mapping, NoReturn, Sequence


class UserError(ValueError):
    """Something the user can fix: printed as one line, exit status 2.

    A ValueError, so library callers that catch ValueError keep working.
    """


class Parser(argparse.ArgumentParser):
    """argparse whose errors are `UserError`s (argparse would print the usage and exit itself)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(message)


def require_at_least(args: Any, minimums: Mapping[str, int]) -> None:
    """Refuse a parsed count below its minimum (`--seeds 0` would silently do nothing); unset ones pass."""
    for name, low in minimums.items():
        value = getattr(args, name)
        if value is not None and value < low:
            raise UserError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")


def one_line(message: object) -> str:
    """Collapse whitespace and newlines: an error message is one line."""
    return " ".join(str(message).split())


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None, *,
             prog: str, interrupted: str = "interrupted") -> int:
    """Run a CLI's `main`; `UserError` → `<prog>: error: <one line>` and 2, Ctrl-C → 130."""
    try:
        return main(argv)
    except UserError as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
