"""A time limit for a blocking step of a test, so a deadlock fails with a message instead of hanging the suite.

Threads get `join(timeout)` and an `is_alive()` assert; subprocesses and
queues their own `timeout=`.  What blocks in the test's own thread (a lock
taken in the test body) has no such argument: `time_limit` interrupts it
with SIGALRM.  Python retries a system call a signal interrupted (PEP 475)
unless the handler raises, so `flock`, `sleep` and waits on a lock all end
with the TimeoutError.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


@contextlib.contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Run the block for at most `seconds`; past that, TimeoutError naming `what` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("time_limit needs the main thread (SIGALRM is delivered there)")

    def expired(signum, frame) -> None:
        raise TimeoutError(f"{what}: still blocked after {seconds:g} s (a deadlock?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


__all__ = ["time_limit"]
