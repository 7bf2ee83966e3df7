"""A full disk stops a command in one line and loses nothing.

A search writes, while it runs: each training's epoch checkpoint (in the run
directory's `ray/`, dropped when the training ends), the table rows, the study
and Tune's own logs.  `DiskGuard` is the Tune stopper and callback that ends
the experiment *before* the run directory's file system fills: once its free
space is below what the running trainings' next checkpoints need (the largest
checkpoint seen so far, or a floor before the first, times the trainings at
once) and a margin for the tables, the experiment ends as on Ctrl-C:
finished trainings are recorded, running ones train again on `--resume`.

A write that meets a full disk anyway (another program filled it between two
checks) is the backstop: a table row or events line (`record.rundir.DiskFull`),
the study (SQLite's "database or disk is full") or a training's checkpoint
(ENOSPC in the worker, seen as the trial's error) is handed to `full`, which
ends the experiment the same way instead of recording the training as lost.
`search.ray_runner.fit` then raises the guard's one line (exit 2).
"""
from __future__ import annotations

import errno
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper

from record.rundir import DiskFull, RunDirError, human_size

CHECKPOINT_FLOOR = 8 << 20  # bytes a checkpoint is assumed to need before the first one is seen
TABLES_MARGIN = 4 << 20  # table rows, curves, events, the study and Tune's logs between two checks
CHECK_EVERY_S = 1.0
FULL_DISK_WORDS = ("No space left on device", "Disk quota exceeded", "database or disk is full",
                   f"[Errno {errno.ENOSPC}]", f"[Errno {errno.EDQUOT}]")


class DiskLow(RunDirError):
    """The experiment was ended before the disk filled (or after a write met a full disk)."""


def is_full_disk(error: BaseException | str) -> bool:
    """Whether an exception (or any exception it was raised from: Optuna wraps SQLite's) or a trial's
    error text is a full disk or quota."""
    seen: set[int] = set()
    while isinstance(error, BaseException) and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (DiskFull, DiskLow)):
            return True
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(word in str(error) for word in FULL_DISK_WORDS):
            return True
        error = error.__cause__ or error.__context__
    return isinstance(error, str) and any(word in error for word in FULL_DISK_WORDS)


def free_bytes(path: Path) -> int:
    """Free bytes of the file system holding `path` (its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


class DiskGuard(Callback, Stopper):
    """Ends a Tune experiment before its storage fills; `error` holds the one line `fit` raises."""

    def __init__(self) -> None:
        self.arm(None, 1)

    def arm(self, path: Path | None, concurrent: int) -> None:
        """Watch the file system of `path` for an experiment of `concurrent` trainings at once."""
        self.path = path
        self.concurrent = concurrent
        self.checkpoint = CHECKPOINT_FLOOR
        self.error: RunDirError | None = None
        self._checked = 0.0

    def need(self) -> int:
        """Free bytes the experiment needs: each running training's next checkpoint (written before its
        last one is dropped) and the tables."""
        return self.checkpoint * self.concurrent + TABLES_MARGIN

    def full(self, error: BaseException | str, what: str = "") -> None:
        """A write met a full disk: end the experiment at Tune's next step (the first reason is kept)."""
        if self.error is not None:
            return
        if isinstance(error, RunDirError):
            self.error = error
            return
        free = free_bytes(self.path) if self.path is not None else 0
        self.error = DiskLow(f"no space left to write {what or self.path} ({human_size(free)} free on its file system; "
                             f"the next checkpoints and the tables need about {human_size(self.need())}): free some "
                             "space, then continue with --resume; finished trainings are kept")

    def check(self) -> bool:
        """Whether the experiment must end (checked against the disk at most once a second)."""
        if self.error is None and self.path is not None and time.monotonic() - self._checked >= CHECK_EVERY_S:
            self._checked = time.monotonic()
            free = free_bytes(self.path)
            if free < self.need():
                self.error = DiskLow(
                    f"stopped before the disk filled: {human_size(free)} free on the file system of {self.path}, "
                    f"and the next checkpoints ({self.concurrent} at once, up to {human_size(self.checkpoint)} each) "
                    "and "
                    f"the tables need about {human_size(self.need())}: free some space, then continue with --resume; "
                    "finished trainings are kept, running ones train again")
        return self.error is not None

    # -- Stopper ------------------------------------------------------------
    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.check()

    # -- Callback: the largest checkpoint so far sets what the next ones need -------------------
    def on_checkpoint(self, iteration: int, trials: list, trial, checkpoint, **info: Any) -> None:
        try:
            size = folder_bytes(checkpoint.path)
        except (OSError, AttributeError):
            return
        self.checkpoint = max(self.checkpoint, size)


def resumable(error: RunDirError, done: int, total: int, again: str) -> DiskLow:
    """The guard's line with how far the command got and the exact command that continues it."""
    return DiskLow(f"{error} ({done}/{total} trainings recorded)".replace("continue with --resume",
                                                                          f"continue with: {again}"))


GUARD = DiskGuard()  # every Tuner of make_tuner stops on it, as on SIGNALLED

# Tune's own writes (its experiment state, saved as it ends) log their full-disk error with a traceback;
# the guard's one line says it instead.
TUNE_LOGGERS = ("ray.tune.execution.experiment_state", "ray.tune.execution.tune_controller")


class QuietWhenFull(logging.Filter):
    """Drops a Tune log record about a full disk, and ends the experiment as any write that met one."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not is_full_disk(error or record.getMessage()):
            return True
        GUARD.full(error or record.getMessage(), "Ray Tune's experiment state")
        return False


def quiet_tune_when_full() -> None:
    """Attach `QuietWhenFull` to Tune's loggers (once per process)."""
    for name in TUNE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietWhenFull) for f in logger.filters):
            logger.addFilter(QuietWhenFull())


__all__ = ["DiskGuard", "DiskLow", "GUARD", "is_full_disk", "folder_bytes", "free_bytes", "quiet_tune_when_full", "resumable"]
