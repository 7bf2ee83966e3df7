"""The node slot: a latency measurement never runs while another trial computes on the same machine.

A search runs several trials per node; a latency measured while the others
train measures their load (the same architecture timed 27.3 ms in one search,
47.6 ms in another).  So every trial on a node shares one slot, a pair of
lock files in the system temp dir (`fcntl.flock`, so a crashed process
releases its locks with its file descriptors):

* a trial holds the slot *shared* while it computes — any number of trials
  train at once — and lets go of it for a moment after every epoch
  (`SharedSlot.pause`);
* a latency measurement holds it *exclusively* (`SharedSlot.exclusive` from
  inside a trial): it waits until every running epoch on the node has
  ended, and no epoch starts until it is done.

The second file is a turnstile that gives the measurement priority: a
measurement takes the gate before it waits for the slot, and an epoch must
pass the gate to take the slot, so trials that keep starting epochs cannot
starve a waiting measurement (flock itself promises no fairness).  A
measurement waits at most as long as the longest epoch still running.

The slot is per node: the lock files live in `tempfile.gettempdir()` (or
`$GHOSTNAS_SLOT_DIR`), so every search on the machine that uses it — not
only the trials of one run — is kept out of a measurement.  Work that does
not take the slot (other programs) is not; a latency table
(`runtime.latency_table`) built on a quiet machine avoids the problem.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

SLOT_FILE = "ghostnas-node-slot.lock"
GATE_FILE = "ghostnas-node-slot.gate"
_held = threading.local()  # what this thread holds: taking the slot exclusively while sharing it would deadlock


def slot_dir() -> Path:
    return Path(os.environ.get("GHOSTNAS_SLOT_DIR") or tempfile.gettempdir())


def _open(path: Path) -> int:
    # Read-only is enough for flock and lets users share a file another user created.
    return os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)


class SharedSlot:
    """The slot held shared by one training; `pause()` lets a waiting measurement go first."""

    def __init__(self, slot: "NodeSlot") -> None:
        self._slot = slot
        self._fd: int | None = None
        self.waited_s = 0.0  # time spent waiting for measurements, in total

    def _take(self) -> None:
        start = time.perf_counter()
        with self._slot._gate():
            fcntl.flock(self._fd, fcntl.LOCK_SH)
        self.waited_s += time.perf_counter() - start

    def pause(self) -> None:
        """Release and retake the shared slot: a measurement waiting at the gate runs in between."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._take()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[float]:
        """Trade this shared hold for the exclusive one (a trial measuring its own network), then take it back."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        _held.shared -= 1
        try:
            with self._slot.exclusive() as waited:
                yield waited
        finally:
            _held.shared += 1
            self._take()


class NodeSlot:
    """The node's slot; `shared()` around training, `exclusive()` around a latency measurement."""

    def __init__(self, directory: str | Path | None = None) -> None:
        directory = Path(directory) if directory is not None else slot_dir()
        self.lock_path = directory / SLOT_FILE
        self.gate_path = directory / GATE_FILE

    @contextlib.contextmanager
    def _gate(self) -> Iterator[None]:
        fd = _open(self.gate_path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[float]:
        """Hold the node alone; yields the seconds waited for running epochs to end."""
        if getattr(_held, "shared", 0):
            raise RuntimeError("NodeSlot.exclusive() inside shared(): the measurement would wait for itself")
        start = time.perf_counter()
        with self._gate():
            fd = _open(self.lock_path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield time.perf_counter() - start
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def shared(self) -> Iterator[SharedSlot]:
        """Hold the slot with the other trainings of the node; call `pause()` between epochs."""
        held = SharedSlot(self)
        held._fd = _open(self.lock_path)
        _held.shared = getattr(_held, "shared", 0) + 1
        try:
            held._take()
            yield held
        finally:
            _held.shared -= 1
            os.close(held._fd)
