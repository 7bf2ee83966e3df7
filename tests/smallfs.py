"""A real, small file system for a test: a tmpfs mounted in the test's own mount namespace.

`run_in_small_fs` mounts a tmpfs of `size` on `where` inside `unshare -m` (so nothing outside the test
sees it, and it vanishes with the namespace) and runs a Python script there with the repository on its
path; the script prints one JSON line, which is returned.  Processes the script starts (a search and its
local Ray) live in the same namespace and write to the same small file system.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def need_unshare() -> str:
    """`unshare`, or skip: mounting needs root or CAP_SYS_ADMIN."""
    unshare = shutil.which("unshare")
    if not unshare or subprocess.run([unshare, "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare -m (root or CAP_SYS_ADMIN) to mount a small file system")
    return unshare


def run_in_small_fs(where: Path, size: str, script: str, *args: str, timeout: float = 120,
                    env: dict[str, str] | None = None) -> dict:
    """Run `script` (Python source) with `where` a fresh tmpfs of `size` (mount syntax: 32k, 100m);
    argv[1] is `where`, then `args`.  Returns the JSON its last output line holds."""
    unshare = need_unshare()
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([unshare, "-m", "sh", "-c", f'mount -t tmpfs -o size={size} tmpfs "$1" && '
                           f'exec "{sys.executable}" -c "$0" "$@"', script, str(where), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
