"""Cluster faults as events: a lost node costs minutes and one line, never an architecture.

Ray Tune restarts a training whose node, worker process or actor went away
(its FailureConfig) from the training's last epoch checkpoint; the trainable
reports the architecture's own errors as results, so everything Tune sees
as an error is infrastructure.  `Watchdog` is the Tune callback that says so
in one line per event (printed and appended to the run's `events.log`), ends
trainings that run past the time limit (a hang on a partitioned node is then
restarted like a lost node), and drops each finished training's checkpoints.
When a restarted training finishes, one more line says which epoch its last
attempt started from and how many epochs it trained (the trainable counts
them), so a restart that could not read its checkpoint and started over shows.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from record.rundir import DiskFull, append_event
from search.diskguard import GUARD, is_full_disk

# The derived limit: a training may take this many times its budget's epochs (plus one for
# start-up) at the slowest epoch measured so far, and never less than the floor.
TIMEOUT_FLOOR_S = 600.0
TIMEOUT_FACTOR = 3.0
UNMEASURED_EPOCH_S = 3600.0  # before any epoch has been measured


class Watchdog(Callback):
    """Restart events, per-training time limits and checkpoint clean-up, in the driver."""

    def __init__(self, epochs: int, timeout: float | None = None, events: Path | None = None) -> None:
        self.epochs = epochs
        self.timeout = timeout  # --trial-timeout; None: derived (see limit)
        self.events = events
        self.started: dict[str, float] = {}  # trial id -> when its current attempt was first seen running
        self.last_epoch: dict[str, float] = {}  # trial id -> when it last reported an epoch
        self.slowest_epoch = 0.0
        self.timed_out: dict[str, float] = {}  # trial id -> seconds it had run when it was ended

    def limit(self) -> float:
        """Seconds one attempt of a training may run."""
        if self.timeout:
            return self.timeout
        epoch = self.slowest_epoch or UNMEASURED_EPOCH_S
        return max(TIMEOUT_FLOOR_S, TIMEOUT_FACTOR * (self.epochs + 1) * epoch)

    # -- Tune hooks -------------------------------------------------------
    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        for trial in trials:
            if trial.status != "RUNNING":
                continue
            ran = now - self.started.setdefault(trial.trial_id, now)
            if ran > self.limit() and trial.trial_id not in self.timed_out:
                self._end(trial, ran)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict[str, Any], **info: Any) -> None:
        if result.get("epoch") is None:
            return
        now = time.monotonic()
        before = self.last_epoch.get(trial.trial_id, self.started.get(trial.trial_id))
        if before is not None:
            self.slowest_epoch = max(self.slowest_epoch, now - before)
        self.last_epoch[trial.trial_id] = now

    def on_trial_recover(self, iteration: int, trials: list, trial, **info: Any) -> None:
        ran = self.timed_out.pop(trial.trial_id, None)
        text = _error_text(trial)
        if checkpoint_met_full_disk(trial, text):  # a restart would meet the same full disk
            return
        why = (f"training {trial.trial_id} ran {ran:.0f} s, past its limit of {self.limit():.0f} s, "
               f"on node {_node(trial)}" if ran is not None else _lost(trial, text))
        checkpoint = trial.latest_checkpoint_result
        epoch = int(checkpoint.metrics.get("epoch", 0)) if checkpoint is not None else 0
        self.event(f"{why}: training {trial.trial_id} ({_who(trial)}) restarts from epoch {epoch} "
                   f"(restart {trial.run_metadata.num_failures} of {trial.max_failures})", _detail(trial, text))
        self.started.pop(trial.trial_id, None)
        self.last_epoch.pop(trial.trial_id, None)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self.timed_out.pop(trial.trial_id, None)
        text = _error_text(trial)
        self.event(f"{_lost(trial, text)}: training {trial.trial_id} ({_who(trial)}) is recorded as lost "
                   f"after {trial.max_failures} restart(s)", _detail(trial, text))
        drop_checkpoints(trial)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        if trial.run_metadata.num_failures:
            self._resumed(trial)
        drop_checkpoints(trial)

    # -- helpers ----------------------------------------------------------
    def _resumed(self, trial) -> None:
        """What the last attempt of a restarted training computed (the trainable's count): the line that
        shows its restart continued from the epoch the restart event named, or started over."""
        result = trial.last_result or {}
        if result.get("attempt_from") is None:
            return
        self.event(f"training {trial.trial_id} ({_who(trial)}) finished after "
                   f"{trial.run_metadata.num_failures} restart(s): its last attempt started from epoch "
                   f"{result['attempt_from']} and trained {result['attempt_epochs']} epoch(s)")

    def _end(self, trial, ran: float) -> None:
        """Kill the training's actor: Tune sees an actor error and restarts it (FailureConfig)."""
        import ray

        actor = trial.temporary_state.ray_actor
        if actor is None:
            return
        self.timed_out[trial.trial_id] = ran
        ray.kill(actor)

    def event(self, line: str, error: str = "") -> None:
        """One line in the terminal; the line and, indented below it, Ray's error in events.log."""
        try:
            print(line, flush=True)
        except (OSError, ValueError):  # a closed stdout must not end the search
            pass
        if self.events is None:
            return
        try:
            append_event(self.events, line, error)
        except DiskFull as exc:
            GUARD.full(exc)


def _node(trial) -> str:
    """The node the training last reported from (short id), as the driver last heard."""
    node = (trial.last_result or {}).get("node") or ""
    return node[:8] or "?"


def job_of(trial) -> dict[str, Any]:
    """A trial's training: {"arch": ..., "seed": ...} (under "job" for a fixed list of trainings)."""
    return trial.config.get("job", trial.config)


def _who(trial) -> str:
    from space import ArchConfig

    config = job_of(trial)
    return f"{ArchConfig.from_dict(config['arch']).key}, seed {config.get('seed', '-')}"


def checkpoint_met_full_disk(trial, text: str) -> bool:
    """Whether the trial's error is a full disk; if so the experiment ends (`search.diskguard`) and the
    partial checkpoint goes (a resumed search trains the training again from its first epoch)."""
    if not is_full_disk(text):
        return False
    GUARD.full(text, f"training {trial.trial_id}'s checkpoint")
    drop_checkpoints(trial)
    return True


def drop_checkpoints(trial) -> None:
    """A finished training's checkpoints are of no further use (results live in the run directory).

    Checkpoints are in the storage path beside the trial's results; where that
    is not a local folder (cloud storage), they stay, as Tune keeps them.
    """
    path = trial.path
    if not path or not Path(path).is_dir():
        return
    for folder in Path(path).glob("checkpoint_*"):
        shutil.rmtree(folder, ignore_errors=True)


def _error_text(trial) -> str:
    """The trial's traceback as Tune recorded it.

    At callback time Tune has written the traceback only to the trial's local
    staging folder (`error_file`); the copy in the storage path comes later.
    """
    text = ""
    local = trial.error_file
    if local and os.path.isfile(local):
        with open(local, errors="replace") as f:
            text = f.read()
    return str(text or trial.get_error() or "")


# Ray's memory monitor, when it kills a worker: "... killed due to the node running low on memory.
# Memory on the node (IP: ..., ID: <hex>) was 1.46GB used / 23.54GB limit (0.06)".
_OOM = re.compile(r"killed due to the node running low on memory.*?ID: (\w+)\) was ([\d.]+\w+ used / [\d.]+\w+ limit)",
                  re.S)
# An actor that died with its node: "The actor died because its node has died. Node Id: <hex>".
_NODE_DIED = re.compile(r"its node has died\. Node Id: (\w+)")


def out_of_memory(text: str) -> tuple[str, str] | None:
    """(node id, "X used / Y limit") when Ray's memory monitor killed the training's worker, else None."""
    match = _OOM.search(text)
    return (match.group(1)[:8], match.group(2)) if match else None


def error_line(trial, text: str | None = None) -> str:
    """One line for what ended the attempt: the traceback's last line (exception type and message), or,
    for a worker Ray killed for memory, what the node held and what to change.  `text`: the trial's
    error as already read (`_error_text`)."""
    text = _error_text(trial) if text is None else text
    oom = out_of_memory(text)
    if oom is not None:
        return (f"Ray's memory monitor killed the training's worker (node {oom[0]} at {oom[1]}): "
                "run fewer trainings at once (--max-concurrent, or --cpus-per-trial so fewer fit on a node)")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else "trial raised an error (see Ray's trial log)"


def _detail(trial, text: str) -> str:
    """What events.log keeps under an event's line: Ray's error in one line ("" when Tune recorded none)."""
    return error_line(trial, text) if text else ""


def _lost(trial, text: str) -> str:
    """What happened to the training's node, for the event line.

    The node is the one Ray's error names (an actor that died with its node:
    right even for a training lost before its first epoch), else the one the
    training last reported from.
    """
    oom = out_of_memory(text)
    if oom is not None:
        return f"node {oom[0]} out of memory ({oom[1]})"
    died = _NODE_DIED.search(text)
    return f"node {died.group(1)[:8] if died else _node(trial)} lost"
