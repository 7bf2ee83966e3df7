"""`python -m MODULE ARGS` run in the test's own process: the same `__main__` block, without a new interpreter.

A new interpreter costs 1.5–2.5 s before the first line of ours runs (torch's
import), and the fast layer has dozens of one-line user-error checks: run as
subprocesses they were most of its time.  `in_process` executes the module's
`__main__` block with `runpy` (what `python -m` itself does), with argv, the
environment and the working directory set as for the real command, and
returns what `subprocess.run` would: exit status, stdout, stderr.  A crash
comes back as Python prints it (a traceback on stderr, status 1), so the
"no traceback" assertions still bite.  Each CLI keeps at least one test
through a real `python -m` subprocess (`tests/test_cli_entry.py`), which
covers the wiring this skips.
"""
from __future__ import annotations

import contextlib
import io
import os
import runpy
import signal
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _status(code: object, stderr: io.StringIO) -> int:
    """SystemExit's code as the interpreter turns it into an exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=stderr)
    return 1


@contextlib.contextmanager
def _restored(env: dict[str, str] | None, cwd: Path):
    """The process state a command may change (environment, cwd, signal handlers, torch threads) put back after."""
    import torch

    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), list(sys.argv)
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved_threads = torch.get_num_threads()
    os.environ.update(env or {})
    os.chdir(cwd)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv[:] = saved_argv
        for s, handler in saved_signals.items():
            signal.signal(s, handler)
        torch.set_num_threads(saved_threads)


def in_process(module: str, *args: str, env: dict[str, str] | None = None, cwd: Path = REPO,
               **_ignored: object) -> subprocess.CompletedProcess:
    """`python -m module *args` in this process; `env` adds to the environment as `{**os.environ, **env}` would.

    Keyword arguments of `subprocess.run` that do not apply here (timeout, text) are accepted and ignored,
    so a test helper can switch between the two.
    """
    out, err = io.StringIO(), io.StringIO()
    with _restored(env, cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        sys.argv[:] = [module, *args]
        try:
            with warnings.catch_warnings():
                # runpy's note that the module was imported before it ran as __main__ (other tests import it).
                warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy")
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            status = 0
        except SystemExit as exc:
            status = _status(exc.code, err)
        except BaseException:  # what the interpreter would print before exiting 1
            traceback.print_exc(file=err)
            status = 1
    return subprocess.CompletedProcess([sys.executable, "-m", module, *args], status, out.getvalue(), err.getvalue())


def python_m(module: str, *args: str, env: dict[str, str] | None = None, cwd: Path = REPO,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m module *args` in a new interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def tour_commands() -> str:
    """The bash block of docs/getting-started.md's five-command tour, as a user copies it."""
    import re

    page = (REPO / "docs" / "getting-started.md").read_text()
    tour = page[page.index("## A first search in five commands"):]
    return re.search(r"```bash\n(.*?)```", tour, re.S).group(1)


def tour_search_line() -> str:
    """The tour's search command (its first line after `export CIFAR=...`), as written."""
    lines = tour_commands().splitlines()
    assert lines[0].startswith("export CIFAR=") and lines[1].startswith("python -m search.run "), lines[:2]
    return lines[1]


def free_port() -> int:
    """A TCP port free on loopback now (for a Ray head or a dashboard the test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shell_env() -> dict[str, str]:
    """The environment a user's shell gives the docs' commands: `python` is this interpreter, the repo importable."""
    return {**os.environ, "PYTHONPATH": str(REPO),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
