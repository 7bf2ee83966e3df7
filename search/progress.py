"""Tune callback: writes each finished trial to the table and prints progress.

Runs in the driver, so the table has a single writer; a row is on disk
(fsync'ed) before the next trial is scheduled.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, TextIO

from ray.tune import Callback

from space import PRESETS, ArchConfig
from search.rundir import TrialsTable, arch_columns

PRESET_BY_KEY = {cfg.key: name for name, cfg in PRESETS.items()}
RESULT_FIELDS = ("macs", "params", "latency_ms", "latency_p10_ms", "latency_p90_ms",
                 "epochs", "train_seconds", "images_per_s", "wall_seconds")


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def trial_row(arch: ArchConfig, status: str, result: dict[str, Any], error: str = "", trial_id: str = "") -> dict[str, Any]:
    row: dict[str, Any] = {"trial_id": trial_id, "status": status, "key": arch.key,
                           "preset": PRESET_BY_KEY.get(arch.key, ""), **arch_columns(arch)}
    row.update({k: result.get(k) for k in RESULT_FIELDS})
    if status == "ok":
        row["val_acc"] = result.get("val_acc")
    row["error"] = error
    return row


def _error_line(trial) -> str:
    """The last line of the trial's traceback: the exception type and message.

    At callback time Tune has written the traceback only to the trial's local
    staging folder (`error_file`); the copy in the storage path comes later.
    """
    text = ""
    local = trial.error_file
    if local and os.path.isfile(local):
        with open(local, errors="replace") as f:
            text = f.read()
    if not text:
        text = trial.get_error() or ""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else "trial raised an error (see Ray's trial log)"


class TableWriter(Callback):
    """Records finished trials and reports progress (done/total, running, failed, front, ETA)."""

    def __init__(
        self,
        table: TrialsTable,
        known: dict[str, dict[str, Any]],
        objectives: list[str],
        total: int,
        front_size: Callable[[], int],
        cost: Callable[[ArchConfig], tuple[int, int]] | None = None,
        out: TextIO = sys.stdout,
        heartbeat_s: float = 60.0,
    ) -> None:
        self.table = table
        self.known = known
        self.objectives = objectives
        self.total = total
        self.front_size = front_size
        self.cost = cost  # (macs, params) of an arch, for trials that failed before reporting them
        self.out = out
        self.heartbeat_s = heartbeat_s
        self.started = time.monotonic()
        self.done_at_start = len(table.trained())
        self._last_print = self.started
        self._running = 0

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles callbacks into its experiment state. Resume goes through the
        run directory, never through that pickle, so the output stream and the
        run-directory closure (which holds the lock file) are left out."""
        state = dict(self.__dict__)
        state.update(out=None, front_size=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.out = self.out or sys.stdout
        self.front_size = self.front_size or (lambda: 0)

    # -- Tune hooks -------------------------------------------------------
    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._running = _running_besides(trials, None)
        if time.monotonic() - self._last_print >= self.heartbeat_s:
            self._print_status("")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._running = _running_besides(trials, trial)
        result = trial.last_result or {}
        status = result.get("status", "failed")
        if status not in ("ok", "diverged"):
            status = "failed"
        self._record(trial, status, result, result.get("error", "") if status != "ok" else "")

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._running = _running_besides(trials, trial)
        self._record(trial, "failed", trial.last_result or {}, _error_line(trial))

    # -- helpers ----------------------------------------------------------
    def _record(self, trial, status: str, result: dict[str, Any], error: str) -> None:
        arch = ArchConfig.from_dict(trial.config["arch"])
        if self.cost is not None and result.get("macs") is None:
            macs, params = self.cost(arch)
            result = {**result, "macs": macs, "params": params}
        row = self.table.append(trial_row(arch, status, result, error, trial.trial_id))
        values = [float(row[o]) for o in self.objectives] if status == "ok" else None
        self.known[arch.key] = {"values": values}
        self._print_status(self._describe(row))

    def _describe(self, row: dict[str, str]) -> str:
        parts = [f"{row['status']:<8}"]
        if row["status"] == "ok":
            parts.append(f"val_acc={float(row['val_acc']):.4f}")
        if row["macs"]:
            parts.append(f"macs={int(float(row['macs'])) / 1e6:.2f}M")
        if row["latency_ms"]:
            parts.append(f"latency={float(row['latency_ms']):.2f}ms")
        parts.append(row["key"] + (f" ({row['preset']})" if row["preset"] else ""))
        if row["error"]:
            parts.append(f"error: {row['error']}")
        return " ".join(parts)

    def _print_status(self, what: str) -> None:
        self._last_print = time.monotonic()
        trained = self.table.trained()
        done = len(trained)
        failed = sum(1 for r in trained if r["status"] != "ok")
        elapsed = self._last_print - self.started
        new = done - self.done_at_start
        eta = f"{fmt_duration(elapsed / new * (self.total - done))}" if new > 0 and done < self.total else "-"
        line = (f"[{done:>{len(str(self.total))}}/{self.total}] running {self._running} failed {failed} "
                f"front {self.front_size()} | elapsed {fmt_duration(elapsed)} ETA {eta}")
        print(f"{line}  {what}" if what else line, file=self.out, flush=True)


def _running_besides(trials: list, finished) -> int:
    """Trials still running; Tune calls the completion hooks while the finished one still says RUNNING."""
    return sum(1 for t in trials if t.status == "RUNNING" and t is not finished)
