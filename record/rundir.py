"""The run directory: everything one search produces, in one place.

Layout (the contract between `search`, which writes it, and `analysis`, which reads it)::

    <storage-path>/<name>/
        run.json      settings of the search (objectives, sampler, seed, budget, data_dir, ...)
        trials.csv    one row per finished training (architecture × seed), appended and fsync'ed
        curves.csv    one row per epoch of every training (its learning curve), appended as they arrive
        events.log    cluster faults: a lost node or worker, a restart, a training past its time limit
        study.db      the Optuna study (SQLite storage)
        confirm.csv   search.confirm: chosen architectures and the presets, several seeds, on the test batch
        confirm.md    ... and the study's table made from it
        ray/          Ray Tune's experiment state, one folder per attempt (checkpoints of running trainings)
        report.html   the Plotly report written at the end

The trials table is the ground truth for resume: a trial counts as finished
only once its row is on disk, so a SIGKILL can lose at most the trials that
were still running.  Its columns come from the objective vocabulary and the
flat-architecture codec, so a new objective needs no edit here.
"""
from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from space import N_BLOCKS
from cli_kit import UserError

from .arch import arch_columns, n_mca_columns
from .objectives import OBJECTIVES

RUN_VERSION = 1
RUN_FILE = "run.json"
TRIALS_FILE = "trials.csv"
STUDY_FILE = "study.db"
LOCK_FILE = ".lock"
REPORT_FILE = "report.html"
FIDELITY_FILE = "fidelity.csv"
CONFIRM_FILE = "confirm.csv"
CONFIRM_TABLE_FILE = "confirm.md"
CURVES_FILE = "curves.csv"
EVENTS_FILE = "events.log"
# Learning curves: one row per epoch of a training.  A training is (key, seed) — never
# trained twice — which is also how a row joins the trials table (whose `number` is
# given when the training finishes, after its epochs were written).
CURVES_COLUMNS = ["key", "seed", "trial_id", "epoch", "val_acc", "train_loss", "seconds", "recorded_at"]
# The proxy-fidelity check (search.fidelity): one row per re-trained architecture.
FIDELITY_COLUMNS = ["number", "key", "status", "epochs", "train_size", "seed", "val_acc", "train_seconds",
                    "error", "finished_at"]
# The study's comparison (search.confirm): one row per (system, seed), trained on the whole
# training split and scored on the CIFAR-10 test batch.
CONFIRM_COLUMNS_V1 = ["system", "key", "seed", "status", "test_acc", "macs", "params", "latency_ms", "epochs",
                      "train_images", "budget", "train_seconds", "error", "finished_at"]
# search.confirm --int8: the int8 model's test accuracy, agreement with fp32, plan and latency (empty without).
INT8_COLUMNS = ["test_acc_int8", "int8_agreement", "int8_plan", "latency_ms_int8"]
CONFIRM_COLUMNS = [*CONFIRM_COLUMNS_V1[:-2], *INT8_COLUMNS, *CONFIRM_COLUMNS_V1[-2:]]

HEAD_COLUMNS = ["number", "trial_id", "status", "key", "preset"]
# One row per training: an architecture trained with K seeds has K rows, told
# apart by `seed` (the trainer's seed).  Tables written before seeds were
# recorded lack the column; `TrialsTable.open` adds it once, filled with the
# run's seed (the only one those runs trained with).
SEED_COLUMN = "seed"
# Measurements kept beside the objectives (name -> type); not optimised.
MEASURES: dict[str, type] = {
    "latency_p10_ms": float, "latency_p90_ms": float, "epochs": int,
    "train_seconds": float, "images_per_s": float, "wall_seconds": float,
    # 1: val_acc was scored with weights inherited from the supernet of this row's seed (search.oneshot),
    # not trained for this architecture alone; empty in runs from before weight sharing.
    "inherited": int,
}
TAIL_COLUMNS = ["error", "finished_at"]
RESULT_COLUMNS = [*OBJECTIVES, *MEASURES]  # what a trainable reports and the table keeps
STATUSES = ("ok", "stopped", "diverged", "failed", "lost", "infeasible")
# Statuses that count towards --trials: the architecture was handed to a trainer.
# "stopped": the early-stopping scheduler ended it at a rung; its val_acc is the
# last epoch's (a lower-fidelity figure, never on a front).  "lost": its node or
# worker was lost more often than --max-restarts allows (infrastructure, not the architecture).
TRAINED_STATUSES = ("ok", "stopped", "diverged", "failed", "lost")
# Statuses whose row carries a val_acc (a finished training, or one judged at a rung).
ACCURACY_STATUSES = ("ok", "stopped")


def trial_columns(n_mca: int = N_BLOCKS) -> list[str]:
    """The trials table's columns for architectures with `n_mca` placement bits."""
    return [*HEAD_COLUMNS, SEED_COLUMN, *arch_columns(n_mca), *RESULT_COLUMNS, *TAIL_COLUMNS]


COLUMNS = trial_columns()


def column_types(columns: list[str]) -> dict[str, type]:
    """Numeric columns of a table and their type (int or float); the rest are text or bits."""
    types: dict[str, type] = {"number": int, SEED_COLUMN: int, "ratio": int, "dw_size": int, "width": float}
    types.update({name: int if o.integer else float for name, o in OBJECTIVES.items()})
    types.update(MEASURES)
    return {c: t for c, t in types.items() if c in columns}


class RunDirError(UserError):
    """A user-fixable problem with a run directory (missing, locked, damaged, foreign)."""


FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(RunDirError):
    """A write of the run directory met a full disk (or quota): one line naming the file and the space it needs.

    What was written before stays whole (a table keeps complete lines only, run.json its last version), so
    the run resumes once space is freed.
    """

    def __init__(self, path: Path, needed: int) -> None:
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = 0
        super().__init__(f"no space left to write {path} ({human_size(free)} free on its file system, this write "
                         f"needed {human_size(needed)}): free some space, then continue with --resume; everything written "
                         "before is kept")


def human_size(n: int) -> str:
    """Bytes as people read them in a message: 512 B, 37.2 MB."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def append_event(path: Path, line: str, detail: str = "") -> None:
    """One line of events.log (UTC stamp, the line; `detail` indented below it)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(path, "a") as f:
        f.write(f"{stamp} {line}" + (f"\n    {detail}" if detail else "") + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _complete_lines(path: Path):
    """A CSV reader over the table's complete lines: a torn last line (its writer was killed
    mid-write, or is writing now) is left out."""
    with open(path, newline="") as f:
        text = f.read()
    return csv.reader(io.StringIO(text if text.endswith("\n") else text[: text.rfind("\n") + 1]))


def read_trials(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a trials table, read-only.

    A torn last line (the writer was killed mid-write, or is writing now) is
    ignored.  A table written before a column was added reads with that
    column empty.  Any other damage raises RunDirError naming the line.
    """
    reader = _complete_lines(path)
    header = next(reader, None)
    if header is None:
        raise RunDirError(f"{path} is empty: not a trials table")
    expected = trial_columns(n_mca_columns(header))
    if set(header) - set(expected) or not set(HEAD_COLUMNS) <= set(header) or n_mca_columns(header) == 0:
        raise RunDirError(f"{path} is not a trials table of this version (columns differ)")
    rows = []
    for line, cells in enumerate(reader, start=2):
        if len(cells) != len(header):
            raise RunDirError(f"{path}: line {line} is damaged ({len(cells)} fields, expected {len(header)}); "
                              "remove that line to use the run")
        row = dict.fromkeys(expected, "")
        row.update(zip(header, cells))
        rows.append(row)
    return expected, rows


def _write_rows(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    """Write a whole table atomically (used once, to bring an older table to today's columns)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    writer.writerows([[r.get(c, "") for c in columns] for r in rows])
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def heal_tail(path: Path) -> int:
    """Cut a half-written last line so the next append starts on a fresh line; bytes cut."""
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        f.seek(0)
        data = f.read()
        keep = data.rfind(b"\n") + 1
        f.truncate(keep)
        return size - keep


def append_line(path: Path, cells: list[str]) -> int:
    """Heal a torn tail, then append one CSV line, flushed and fsync'ed; returns the bytes cut."""
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    cut = heal_tail(path)
    try:
        with open(path, "a", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        if exc.errno not in FULL_DISK:
            raise
        heal_tail(path)  # the part of the line that made it to disk: the table keeps complete lines only
        raise DiskFull(path, len(buf.getvalue().encode())) from None
    return cut


@dataclass
class TrialsTable:
    """Append-only CSV of finished trials; every append is flushed and fsync'ed.

    The table heals itself before each append: a torn last line (a writer
    killed mid-line, or anything else that left a partial line) is cut, and
    the cut is reported in `notes` for the caller to show.
    """

    path: Path
    columns: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path, n_mca: int = N_BLOCKS, run_seed: int | None = None) -> "TrialsTable":
        """Open (or create) the table; an older one is rewritten once with today's columns.

        `run_seed` fills the seed of trained rows in a table from before seeds
        were recorded: such runs trained every architecture once, with the
        run's seed.
        """
        if not path.exists():
            columns = trial_columns(n_mca)
            _write_rows(path, columns, [])
            return cls(path, columns)
        heal_tail(path)
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        columns, rows = read_trials(path)
        if header != columns:  # written before a column was added: rewrite once with today's columns
            if SEED_COLUMN not in header and run_seed is not None:
                for row in rows:
                    if row["status"] in TRAINED_STATUSES:
                        row[SEED_COLUMN] = str(run_seed)
            _write_rows(path, columns, rows)
        return cls(path, columns, rows)

    def append(self, row: dict[str, Any]) -> dict[str, str]:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"unknown trials.csv columns: {sorted(unknown)}")
        full = {c: _cell(row.get(c)) for c in self.columns}
        full["number"] = str(len(self.rows))
        full["finished_at"] = full["finished_at"] or utc_now()
        cut = append_line(self.path, [full[c] for c in self.columns])
        if cut:
            self.notes.append(f"{self.path.name}: cut a torn line of {cut} bytes before writing trial {full['number']}")
        self.rows.append(full)
        return full

    def trained(self) -> list[dict[str, str]]:
        return [r for r in self.rows if r["status"] in TRAINED_STATUSES]


@dataclass
class AppendTable:
    """An append-only CSV beside the trials table (same durability: heal, append, fsync)."""

    path: Path
    columns: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path, columns: list[str], what: str) -> "AppendTable":
        if not path.exists():
            _write_rows(path, columns, [])
            return cls(path, columns)
        heal_tail(path)
        return cls(path, columns, read_table(path, columns, what))

    def append(self, row: dict[str, Any]) -> dict[str, str]:
        full = {c: _cell(row.get(c)) for c in self.columns}
        stamp = self.columns[-1]  # finished_at / recorded_at
        full[stamp] = full[stamp] or utc_now()
        append_line(self.path, [full[c] for c in self.columns])
        self.rows.append(full)
        return full

    def keep_only(self, keep) -> int:
        """Drop rows whose training is not in `keep` (a set of (key, seed)); returns the rows dropped.

        Used on resume: epochs of trainings a kill cut off are forgotten, since
        those trainings run again from their first epoch.
        """
        kept = [r for r in self.rows if (r["key"], r["seed"]) in keep]
        dropped = len(self.rows) - len(kept)
        if dropped:
            _write_rows(self.path, self.columns, kept)
            self.rows = kept
        return dropped


def read_table(path: Path, columns: list[str], what: str) -> list[dict[str, str]]:
    """Rows of an append table (a torn last line is ignored); RunDirError if it is not one."""
    reader = _complete_lines(path)
    if next(reader, None) != columns:
        raise RunDirError(f"{path} is not a {what} table of this version (columns differ)")
    rows = []
    for line, cells in enumerate(reader, start=2):
        if len(cells) != len(columns):
            raise RunDirError(f"{path}: line {line} is damaged; remove that line to use it")
        rows.append(dict(zip(columns, cells)))
    return rows


def open_fidelity(path: Path) -> AppendTable:
    """fidelity.csv: one row per reference re-training (search.fidelity)."""
    return AppendTable.open(path, FIDELITY_COLUMNS, "fidelity")


def read_fidelity(path: Path) -> list[dict[str, str]]:
    return read_table(path, FIDELITY_COLUMNS, "fidelity")


def open_confirm(path: Path) -> AppendTable:
    """confirm.csv: one row per confirmed (system, seed); a table from before int8 gains its empty columns."""
    if path.exists() and next(_complete_lines(path), None) == CONFIRM_COLUMNS_V1:
        _write_rows(path, CONFIRM_COLUMNS, [dict(zip(CONFIRM_COLUMNS_V1, c)) for c in list(_complete_lines(path))[1:]
                                            if len(c) == len(CONFIRM_COLUMNS_V1)])
    return AppendTable.open(path, CONFIRM_COLUMNS, "confirmation")


def read_confirm(path: Path) -> list[dict[str, str]]:
    """Rows of confirm.csv; none when search.confirm never ran."""
    if path.exists() and next(_complete_lines(path), None) == CONFIRM_COLUMNS_V1:
        return [{**dict.fromkeys(INT8_COLUMNS, ""), **r} for r in read_table(path, CONFIRM_COLUMNS_V1, "confirmation")]
    return read_table(path, CONFIRM_COLUMNS, "confirmation") if path.exists() else []


def open_curves(path: Path) -> AppendTable:
    """curves.csv: one row per epoch of every training."""
    return AppendTable.open(path, CURVES_COLUMNS, "learning-curves")


def read_curves(path: Path) -> list[dict[str, str]]:
    """Rows of curves.csv; none for a run from before learning curves were recorded."""
    return read_table(path, CURVES_COLUMNS, "learning-curves") if path.exists() else []


def read_meta(path: Path) -> dict[str, Any]:
    """run.json of the run at `path`, read-only (no lock): RunDirError if it is not a run directory."""
    run_file = path / RUN_FILE
    if not run_file.is_file():
        raise RunDirError(f"{path} is not a run directory (no {RUN_FILE}); check the name and --storage-path")
    try:
        meta = json.loads(run_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{run_file} is not valid JSON ({getattr(exc, 'msg', exc)}); "
                          f"{path} is not a run directory") from None
    if not isinstance(meta, dict):
        raise RunDirError(f"{run_file} does not hold a JSON object; {path} is not a run directory")
    version = meta.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > RUN_VERSION:
        # Its tables may hold columns or meanings this version would misread: refused, never half-read.
        raise RunDirError(f"{path} was written by a newer version of this tool (run.json version {version}; this "
                          f"one reads up to {RUN_VERSION}): upgrade ghostnas to read or resume it")
    return meta


@dataclass
class RunDir:
    """A run directory opened for writing: one search process holds its lock."""

    path: Path
    meta: dict[str, Any]
    table: TrialsTable
    _lock: Any = None
    curves: AppendTable | None = None

    def __post_init__(self) -> None:
        """Open the learning curves, forgetting epochs of trainings that never finished."""
        if self.curves is None:
            self.curves = open_curves(self.path / CURVES_FILE)
            self.curves.keep_only({(r["key"], r[SEED_COLUMN]) for r in self.table.trained()})

    @property
    def study_url(self) -> str:
        return f"sqlite:///{(self.path / STUDY_FILE).resolve()}"

    @property
    def ray_dir(self) -> Path:
        return self.path / "ray"

    @property
    def events_path(self) -> Path:
        """events.log: a lost node, a restart, a training past its time limit, one line each."""
        return self.path / EVENTS_FILE

    @property
    def report_path(self) -> Path:
        return self.path / REPORT_FILE

    @classmethod
    def create(cls, path: Path, meta: dict[str, Any], n_mca: int = N_BLOCKS) -> "RunDir":
        if path.exists() and any(path.iterdir()):
            raise RunDirError(f"run directory {path} already exists; use --resume to continue it "
                              "or --name to start another")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create run directory {path} ({exc.strerror or exc}); choose another "
                              "--storage-path") from None
        lock = _acquire_lock(path)
        meta = {"version": RUN_VERSION, **meta, "created": utc_now(), "attempts": 0}
        _write_json_atomic(path / RUN_FILE, meta)
        return cls(path, meta, TrialsTable.open(path / TRIALS_FILE, n_mca), lock)

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        if not (path / RUN_FILE).is_file():
            raise RunDirError(f"no search run to resume at {path} (no {RUN_FILE}); check --name and --storage-path")
        meta = read_meta(path)
        if meta.get("version") != RUN_VERSION:
            raise RunDirError(f"{path} was written by another version of this tool (run.json version "
                              f"{meta.get('version')!r}, this one writes {RUN_VERSION}): it cannot be resumed here")
        lock = _acquire_lock(path)
        try:
            table = TrialsTable.open(path / TRIALS_FILE, run_seed=int(meta.get("seed", 0)))
        except BaseException:
            lock.close()
            raise
        return cls(path, meta, table, lock)

    def update_meta(self, **changes: Any) -> None:
        self.meta.update(changes)
        _write_json_atomic(self.path / RUN_FILE, self.meta)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _acquire_lock(path: Path):
    """One search process per run directory: a second one would corrupt the table."""
    try:
        handle = open(path / LOCK_FILE, "w")
    except OSError as exc:  # a read-only file system, a directory of another user: nothing is written or lost
        raise RunDirError(f"cannot write in run directory {path} ({exc.strerror or exc}): a search writes its "
                          "tables there; copy the run to a writable place and use --storage-path") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunDirError(f"run directory {path} is in use by another search process") from None
    return handle


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n", path.with_suffix(".tmp"))


def write_text_atomic(path: Path, text: str, tmp: Path | None = None) -> None:
    """`text` to `path` through a temporary file renamed over it: a reader sees the old file or the new one,
    never half; a full disk removes the temporary file, keeps the old one and raises `DiskFull`."""
    tmp = tmp or path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in FULL_DISK:
            raise DiskFull(path, len(text.encode())) from None
        raise
    os.replace(tmp, path)
