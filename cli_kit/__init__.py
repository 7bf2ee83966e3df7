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
import contextlib
import shutil
import signal
import sys
import textwrap
import threading
from typing import Any, Callable, Iterator, Mapping, NoReturn, Sequence


class UserError(ValueError):
    """Something the user can fix: printed as one line, exit status 2.

    A ValueError, so library callers that catch ValueError keep working.
    """


class Interrupted(KeyboardInterrupt):
    """A signal ended the command early: Ctrl-C (SIGINT) or SIGTERM (`kill`, a batch scheduler, `timeout`).

    The command exits 128 + the signal's number, as a shell reports a process
    that signal ended (130, 143): a script that chains commands can tell an
    interrupted one from a finished one.  `message` says what was kept and the
    command that continues.  A KeyboardInterrupt, so code that cleans up on
    Ctrl-C cleans up on SIGTERM too.
    """

    def __init__(self, signum: int = signal.SIGINT, message: str = "") -> None:
        super().__init__(message)
        self.signum, self.message = int(signum), message


def exit_status(signum: int) -> int:
    """What a shell reports for a process that `signum` ended: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + int(signum)


def wrap(text: str, indent: str = "  ") -> str:
    """`text` split into lines that fit the terminal (at most 100 columns, for reading); continuation lines
    indented, so a long sentence of the start-up reads as one paragraph."""
    width = max(40, min(shutil.get_terminal_size((100, 24)).columns, 100))
    return textwrap.fill(text, width=width, subsequent_indent=indent, break_on_hyphens=False,
                         break_long_words=False)


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
    """Run a CLI's `main`; `UserError` → `<prog>: error: <one line>` and 2; Ctrl-C → 130 and SIGTERM → 143,
    each with the `Interrupted` message (what was kept, how to continue) or `interrupted`."""
    try:
        with sigterm_interrupts():
            return main(argv)
    except UserError as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"{prog}: {getattr(exc, 'message', '') or interrupted}", file=sys.stderr, flush=True)
        return exit_status(getattr(exc, "signum", signal.SIGINT))


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises `Interrupted` as Ctrl-C raises KeyboardInterrupt (Python's default ends the process
    with no word and no clean-up); code that installs its own handler (Ray) may take it over meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    saved = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, saved)
