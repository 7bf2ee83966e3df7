"""Every command through a real `python -m`: the `__main__` wiring that in-process tests (tests/commands.py) skip.

Most user-error tests run a command's `__main__` in the test's own process to
stay fast; this file checks, once per command, that the real interpreter
reaches the same one-line error and exit status 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from commands import in_process, python_m

COMMANDS = ["search.run", "search.confirm", "search.fidelity", "trainer.train", "runtime.latency_table",
            "runtime.export", "search.int8", "analysis.report", "analysis.select", "analysis.effects",
            "space.describe"]


@pytest.mark.parametrize("module", COMMANDS)
def test_a_wrong_flag_is_one_line_and_exit_2_through_python_m(module):
    done = python_m(module, "--no-such-flag", timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{module}: error: ") and "Traceback" not in done.stderr, done.stderr
    # The same answer as the in-process run the other tests rely on.
    inside = in_process(module, "--no-such-flag")
    assert (inside.returncode, inside.stdout, inside.stderr) == (2, done.stdout, done.stderr)


def test_the_installed_script_is_search_run():
    script = Path(sys.executable).with_name("ghostnas-search")
    if not script.exists():
        pytest.skip(f"{script} is not installed (pip install -e . installs it)")
    import subprocess

    done = subprocess.run([str(script), "--no-such-flag"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("search.run: error: "), done.stderr
