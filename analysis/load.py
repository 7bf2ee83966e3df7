"""Load a run directory into pandas, read-only.

A search may still be running while we read: the trials table is only ever
appended to, and `record.rundir.read_trials` drops a torn last line, so
reading never needs the run's lock (and must never take it, or it would block
the search).  Everything typed here once, so pareto/select/report can treat
columns as numbers without re-parsing strings.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from record.arch import DEFAULT_BACKBONE, arch_columns, from_flat, mca_columns, n_mca_columns
from record.objectives import check_objectives
from record.rundir import STATUSES, TRIALS_FILE, RunDirError, column_types, read_meta, read_trials
from space import ArchConfig

MCA_COLUMNS = mca_columns()  # GhostNet's 16 placement bits; other backbones: `placement_columns(df)`
ARCH_COLUMNS = arch_columns()

RunError = RunDirError  # a user-fixable problem with the run directory given to an analysis command


def placement_columns(df: pd.DataFrame) -> list[str]:
    """The `mca_i` columns of a trials frame (16 for GhostNet, 27 for ResNet-56, ...)."""
    return mca_columns(n_mca_columns(df.columns))


@dataclass
class RunData:
    """One run: its directory, its settings (run.json) and its trials as a typed DataFrame."""

    path: Path
    meta: dict[str, Any]
    trials: pd.DataFrame

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.name)

    @property
    def objectives(self) -> list[str]:
        return list(self.meta.get("objectives") or ["val_acc", "macs"])

    @property
    def ok(self) -> pd.DataFrame:
        """Trials that trained to the end: the only ones with an accuracy."""
        return self.trials[self.trials["status"] == "ok"]

    @staticmethod
    def arch(row: Mapping[str, Any]) -> ArchConfig:
        """The ArchConfig of one trials row (a Series or dict)."""
        return from_flat(row)


def load_run(path: str | Path, allow_empty: bool = False) -> RunData:
    """Read `<run>/run.json` and `<run>/trials.csv`; RunError (one line) if it is not a usable run.

    A run without any finished trial is an error for reports and selection;
    progress displays of a search that just started pass `allow_empty=True`
    and get a typed, empty `trials` frame.
    """
    path = Path(path)
    meta = read_meta(path)
    trials_file = path / TRIALS_FILE
    if not trials_file.is_file():
        raise RunError(f"run {path} has no {TRIALS_FILE} (no trial has been recorded)")
    try:
        columns, rows = read_trials(trials_file)
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"cannot read {trials_file}: {exc}") from None
    if not rows and not allow_empty:
        raise RunError(f"run {path} is empty: {TRIALS_FILE} has no finished trial yet")
    return RunData(path=path, meta=meta, trials=_typed(columns, rows, trials_file))


def _typed(columns: list[str], rows: list[dict[str, str]], where: Path) -> pd.DataFrame:
    """Types come from the record layer's vocabulary (objectives and measures), not from a list here."""
    df = pd.DataFrame(rows, columns=columns)
    mca = mca_columns(n_mca_columns(columns))
    bad = sorted(set(df["status"]) - set(STATUSES))
    if bad:
        raise RunError(f"{where}: unknown trial status {bad[0]!r}; expected one of {', '.join(STATUSES)}")
    try:
        for c in mca:
            df[c] = df[c].astype(int).astype(bool)
        for c, kind in column_types(columns).items():
            values = pd.to_numeric(df[c].replace("", None), errors="raise").astype(float)
            # integer columns are nullable: failed trials may lack MACs or epochs
            df[c] = values.round().astype("Int64") if kind is int else values
        for c in ("number", "ratio", "dw_size"):
            df[c] = df[c].astype(int)
    except (ValueError, TypeError) as exc:
        raise RunError(f"{where} has a malformed value ({exc})") from None
    # Accuracy only means something for trials that trained to the end.
    df.loc[df["status"] != "ok", "val_acc"] = float("nan")
    for c in ("key", "preset", "kernels", "error", "trial_id", "finished_at"):
        df[c] = df[c].fillna("").astype(str)
    df["backbone"] = df["backbone"].replace("", DEFAULT_BACKBONE).fillna(DEFAULT_BACKBONE).astype(str)
    df["mca_string"] = ["".join("1" if b else "0" for b in bits) for bits in df[mca].itertuples(index=False)]
    df["n_mca"] = df[mca].sum(axis=1).astype(int)
    # What users read: a net without MCA has no kernel scales, whatever the field holds.
    df["mca_kernels"] = df["kernels"].where(df["n_mca"] > 0, "-")
    df["label"] = [p if p else f"#{n}" for p, n in zip(df["preset"], df["number"])]
    return df.sort_values("number", kind="stable").reset_index(drop=True)


__all__ = ["RunData", "RunError", "load_run", "check_objectives", "MCA_COLUMNS", "ARCH_COLUMNS", "placement_columns"]
