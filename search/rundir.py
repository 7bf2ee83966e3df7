"""The run directory: everything one search produces, in one place.

Layout (the contract `analysis/` reads)::

    <storage-path>/<name>/
        run.json      settings of the search (objectives, sampler, seed, budget, ...)
        trials.csv    one row per finished trial, appended and fsync'ed as it finishes
        study.db      the Optuna study (SQLite storage)
        ray/          Ray Tune's experiment state, one folder per attempt
        report.html   the Plotly report written at the end

The trials table is the ground truth for resume: a trial counts as finished
only once its row is on disk, so a SIGKILL can lose at most the trials that
were still running.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from space import N_BLOCKS

RUN_VERSION = 1
RUN_FILE = "run.json"
TRIALS_FILE = "trials.csv"
STUDY_FILE = "study.db"
LOCK_FILE = ".lock"

ARCH_COLUMNS = [f"mca_{i}" for i in range(N_BLOCKS)] + ["kernels", "ratio", "width", "dw_size"]
COLUMNS = (
    ["number", "trial_id", "status", "key", "preset"]
    + ARCH_COLUMNS
    + [
        "val_acc",
        "macs",
        "params",
        "latency_ms",
        "latency_p10_ms",
        "latency_p90_ms",
        "epochs",
        "train_seconds",
        "images_per_s",
        "wall_seconds",
        "error",
        "finished_at",
    ]
)
STATUSES = ("ok", "diverged", "failed", "infeasible")
# Statuses that count towards --trials: the architecture was handed to a trainer.
TRAINED_STATUSES = ("ok", "diverged", "failed")


class RunDirError(ValueError):
    """A user-fixable problem with a run directory (missing, locked, foreign)."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class TrialsTable:
    """Append-only CSV of finished trials; every append is flushed and fsync'ed."""

    path: Path
    rows: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path) -> "TrialsTable":
        table = cls(path)
        if path.exists():
            table.rows = read_trials(path)
            _drop_torn_tail(path, len(table.rows))
        else:
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(COLUMNS)
                f.flush()
                os.fsync(f.fileno())
        return table

    def append(self, row: dict[str, Any]) -> dict[str, str]:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown trials.csv columns: {sorted(unknown)}")
        full = {c: _cell(row.get(c)) for c in COLUMNS}
        full["number"] = str(len(self.rows))
        full["finished_at"] = full["finished_at"] or utc_now()
        buf = io.StringIO()
        csv.writer(buf).writerow([full[c] for c in COLUMNS])
        with open(self.path, "a", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        self.rows.append(full)
        return full

    def keys(self) -> set[str]:
        return {r["key"] for r in self.rows}

    def trained(self) -> list[dict[str, str]]:
        return [r for r in self.rows if r["status"] in TRAINED_STATUSES]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def read_trials(path: Path) -> list[dict[str, str]]:
    """Rows of a trials table; a torn last line (the writer was killed mid-write) is ignored."""
    with open(path, newline="") as f:
        text = f.read()
    complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(complete))
    if reader.fieldnames != COLUMNS:
        raise RunDirError(f"{path} is not a trials table of this version (columns differ)")
    return [row for row in reader]


def _drop_torn_tail(path: Path, n_rows: int) -> None:
    """Cut a half-written last line so the next append starts on a fresh line."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


@dataclass
class RunDir:
    path: Path
    meta: dict[str, Any]
    table: TrialsTable
    _lock: Any = None

    @property
    def study_url(self) -> str:
        return f"sqlite:///{(self.path / STUDY_FILE).resolve()}"

    @property
    def ray_dir(self) -> Path:
        return self.path / "ray"

    @property
    def report_path(self) -> Path:
        return self.path / "report.html"

    @classmethod
    def create(cls, path: Path, meta: dict[str, Any]) -> "RunDir":
        if path.exists() and any(path.iterdir()):
            raise RunDirError(
                f"run directory {path} already exists; use --resume to continue it "
                "or --name to start another"
            )
        path.mkdir(parents=True, exist_ok=True)
        lock = _acquire_lock(path)
        meta = {"version": RUN_VERSION, **meta, "created": utc_now(), "attempts": 0}
        _write_json_atomic(path / RUN_FILE, meta)
        return cls(path, meta, TrialsTable.open(path / TRIALS_FILE), lock)

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        if not (path / RUN_FILE).is_file():
            raise RunDirError(f"no search run to resume at {path} (no {RUN_FILE}); check --name and --storage-path")
        try:
            meta = json.loads((path / RUN_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{path / RUN_FILE} is not valid JSON ({exc.msg})") from None
        if meta.get("version") != RUN_VERSION:
            raise RunDirError(f"{path} was written by another version of this tool")
        lock = _acquire_lock(path)
        return cls(path, meta, TrialsTable.open(path / TRIALS_FILE), lock)

    def update_meta(self, **changes: Any) -> None:
        self.meta.update(changes)
        _write_json_atomic(self.path / RUN_FILE, self.meta)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _acquire_lock(path: Path):
    """One search process per run directory: a second one would corrupt the table."""
    handle = open(path / LOCK_FILE, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunDirError(f"run directory {path} is in use by another search process") from None
    return handle


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def arch_columns(config) -> dict[str, Any]:
    """Flatten an ArchConfig into the table's architecture columns."""
    cols: dict[str, Any] = {f"mca_{i}": int(bit) for i, bit in enumerate(config.mca)}
    cols.update(
        kernels="-".join(str(k) for k in config.kernels),
        ratio=config.ratio,
        width=config.width,
        dw_size=config.dw_size,
    )
    return cols


def iter_ok(rows: Iterable[dict[str, str]]) -> Iterable[dict[str, str]]:
    return (r for r in rows if r["status"] == "ok")
