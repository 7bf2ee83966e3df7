"""Tune callback: writes each epoch to the learning curves, each finished trial to the table, and prints progress.

Runs in the driver, so each table has a single writer; a row is on disk
(fsync'ed) before the next trial is scheduled.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

from record.arch import to_flat
from record.objectives import OBJECTIVES
from record.rundir import ACCURACY_STATUSES, RESULT_COLUMNS, SEED_COLUMN, AppendTable, DiskFull, TrialsTable
from record.stats import Estimate
from search.diskguard import GUARD
from search.ledger import Ledger
from search.ray_runner import FinishedTrainings
from space import BACKBONES, ArchConfig, presets_for

# Keys differ between backbones, so one map names the presets of all of them.
PRESET_BY_KEY = {cfg.key: name for b in BACKBONES for name, cfg in presets_for(b).items()}


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def eta(elapsed: float, finished: int, left: int) -> str:
    """Time left at the pace so far (`finished` trainings in `elapsed` seconds); "-" before the first."""
    return fmt_duration(elapsed / finished * left) if finished > 0 and left > 0 else "-"


def say(line: str, out: TextIO | None = None) -> None:
    """Print a progress line; one that cannot be printed is dropped (a closed or broken stdout must not end
    the trainings)."""
    try:
        print(line, file=out or sys.stdout, flush=True)
    except (OSError, ValueError):
        pass


def trial_row(arch: ArchConfig, status: str, result: dict[str, Any], error: str = "", trial_id: str = "",
              seed: int | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"trial_id": trial_id, "status": status, "key": arch.key,
                           "preset": PRESET_BY_KEY.get(arch.key, ""), SEED_COLUMN: seed, **to_flat(arch)}
    row.update({k: result.get(k) for k in RESULT_COLUMNS})
    if status not in ACCURACY_STATUSES:
        row["val_acc"] = None  # accuracy only means something for a training that finished (or was judged)
    row["error"] = error
    return row


class TableWriter(FinishedTrainings):
    """Records finished trials (table on disk, ledger in memory) and prints progress.

    Progress comes from the ledger, never from re-reading the table, and a
    progress line that cannot be printed is dropped: output is a courtesy,
    the search must go on.
    """

    def __init__(
        self,
        table: TrialsTable,
        ledger: Ledger,
        total: int,
        cost: Callable[[ArchConfig], tuple[int, int]] | None = None,
        out: TextIO | None = None,
        heartbeat_s: float = 60.0,
        curves: AppendTable | None = None,
        stopped: Callable[[str], int | None] | None = None,
    ) -> None:
        self.table = table
        self.curves = curves  # per-epoch rows, written as the epochs arrive
        self.stopped = stopped  # Tune trial id -> epoch the scheduler stopped it at (None: it did not)
        self.ledger = ledger
        self.total = total
        self.cost = cost  # (macs, params) of an arch, for trials that failed before reporting them
        self.out = out
        self.heartbeat_s = heartbeat_s
        self.started = time.monotonic()
        self.done_at_start = ledger.trained
        self._last_print = self.started
        self._running = 0
        self._epochs: dict[str, int] = {}  # trial id -> last epoch on the curves (a restart never repeats one)

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles callbacks into its experiment state. Resume goes through the
        run directory, never through that pickle, so the output stream is left out."""
        return {**self.__dict__, "out": None}

    # -- Tune hooks -------------------------------------------------------
    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._running = running_besides(trials, None)
        if time.monotonic() - self._last_print >= self.heartbeat_s:
            self._print_status("")

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict[str, Any], **info: Any) -> None:
        """An epoch's result: one learning-curve row."""
        if self.curves is None or result.get("status") != "running" or result.get("epoch") is None:
            return
        if result["epoch"] <= self._epochs.get(trial.trial_id, 0):  # restarted from an earlier epoch
            return
        self._epochs[trial.trial_id] = result["epoch"]
        try:
            self.curves.append({"key": result["key"], "seed": result.get("seed"), "trial_id": trial.trial_id,
                                "epoch": result["epoch"], "val_acc": result.get("val_acc"),
                                "train_loss": result.get("train_loss"), "seconds": result.get("train_seconds")})
        except DiskFull as exc:
            GUARD.full(exc)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._running = running_besides(trials, trial)
        super().on_trial_complete(iteration, trials, trial, **info)

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._running = running_besides(trials, trial)
        super().on_trial_error(iteration, trials, trial, **info)

    def finished(self, trial, status: str, result: dict[str, Any], error: str) -> None:
        self.record(ArchConfig.from_dict(trial.config["arch"]), status, result, error, trial.trial_id,
                    seed=trial.config.get("seed"))

    # -- helpers ----------------------------------------------------------
    def record(self, arch: ArchConfig, status: str, result: dict[str, Any], error: str = "",
               trial_id: str = "", seed: int | None = None) -> dict[str, str]:
        """Append one training to the table and the ledger, then print its progress line."""
        if self.cost is not None and result.get("macs") is None:
            macs, params = self.cost(arch)
            result = {**result, "macs": macs, "params": params}
        row = self.table.append(trial_row(arch, status, result, error, trial_id, seed))
        self.ledger.record(row)
        for note in self.table.notes:
            self.say(f"warning: {note}")
        self.table.notes.clear()
        self._print_status(describe_row(row, self.ledger.estimate(row["key"])))
        return row

    def say(self, line: str) -> None:
        say(line, self.out)

    def _print_status(self, what: str) -> None:
        self._last_print = time.monotonic()
        done = self.ledger.trained
        elapsed = self._last_print - self.started
        new = done - self.done_at_start
        line = (f"[{done:>{len(str(self.total))}}/{self.total}] running {self._running} "
                f"failed {self.ledger.failed} {f'stopped {self.ledger.stopped} ' if self.ledger.stopped else ''}"
                f"{f'lost {self.ledger.lost} ' if self.ledger.lost else ''}front {len(self.ledger.front)} | "
                f"elapsed {fmt_duration(elapsed)} ETA {eta(elapsed, new, self.total - done)}")
        self.say(f"{line}  {what}" if what else line)


def describe_row(row: dict[str, str], estimate: Estimate | None = None) -> str:
    """One training in a line: `ok seed=1 val_acc=0.4120 ± 0.0290 macs=13.94M ... <key> (preset)`.

    With the architecture's `estimate`, val_acc is its mean over the seeds so
    far ± the standard error, and this seed's own accuracy follows in brackets
    once there are several.
    """
    parts = [f"{row['status']:<8}"]
    if row.get(SEED_COLUMN, "") != "":
        parts.append(f"seed={row[SEED_COLUMN]}")
    for name, objective in OBJECTIVES.items():
        if name == "val_acc" and row["status"] == "stopped" and row.get(name):
            parts.append(f"val_acc={objective.show(float(row[name]))} (at epoch {row.get('epochs')})")
        elif name == "val_acc" and row.get(name) and estimate is not None:
            this = f" (mean of {estimate.n} seeds; this one {objective.show(float(row[name]))})" if estimate.n > 1 else ""
            parts.append(f"val_acc={estimate.show()}{this}")
        elif row.get(name):
            parts.append(f"{name}={objective.show(float(row[name]))}")
    parts.append(row["key"] + (f" ({row['preset']})" if row["preset"] else ""))
    if row["error"]:
        parts.append(f"error: {row['error']}")
    return " ".join(parts)


def running_besides(trials: list, finished) -> int:
    """Trials still running; Tune calls the completion hooks while the finished one still says RUNNING."""
    return sum(1 for t in trials if t.status == "RUNNING" and t is not finished)
