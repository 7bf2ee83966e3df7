"""A real terminal for tests: a command in a pty, in its own session, as a shell runs it in the foreground.

Pressing Ctrl-C writes ^C to the terminal; the line discipline turns it into
SIGINT for the whole foreground process group — the command and every
process it started there (Ray's own processes included) — exactly as a
user's terminal does.
"""
from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
from pathlib import Path


class Terminal:
    """`python -m <args>` in a pty `columns` wide; `read_until` collects its output, `ctrl_c` presses Ctrl-C."""

    def __init__(self, args: list[str], cwd: Path, columns: int = 80, env: dict[str, str] | None = None) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: session leader, the pty its controlling terminal, foreground group
            os.chdir(cwd)
            os.execve(sys.executable, [sys.executable, "-m", *args], {**os.environ, **(env or {})})
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        self.output = ""
        self.status: int | None = None

    def _read(self, timeout: float) -> bool:
        """Append what the terminal shows within `timeout`; False once the command closed it."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: every process holding the terminal is gone
            return False
        self.output += data.decode(errors="replace").replace("\r\n", "\n")
        return bool(data)

    def read_until(self, text: str, timeout: float) -> bool:
        """Read until `text` shows (True) or the command ends or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while text not in self.output and time.monotonic() < deadline:
            if not self._read(min(1.0, max(0.0, deadline - time.monotonic()))):
                return text in self.output
        return text in self.output

    def ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")

    def wait(self, timeout: float) -> int:
        """The command's exit status (a shell's: 128 + N for signal N), reading its last output meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read(0.2)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self._read(0.2) and select.select([self.fd], [], [], 0)[0]:
                    pass
                self.status = os.waitstatus_to_exitcode(status)
                self.status = 128 - self.status if self.status < 0 else self.status
                return self.status
        raise TimeoutError(f"command still running after {timeout} s; output:\n{self.output[-3000:]}")

    def kill(self) -> None:
        """End the whole process group (a test that failed must not leave trainings behind)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    def close(self) -> None:
        if self.status is None:
            self.kill()
        os.close(self.fd)
