"""Load a run directory into pandas, read-only.

A search may still be running while we read: the trials table is only ever
appended to, and `search.rundir.read_trials` drops a torn last line, so
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

from search.options import check_objectives
from search.rundir import ARCH_COLUMNS, COLUMNS, RUN_FILE, STATUSES, TRIALS_FILE, RunDirError, read_trials
from space import N_BLOCKS, ArchConfig

MCA_COLUMNS = [f"mca_{i}" for i in range(N_BLOCKS)]
FLOAT_COLUMNS = ("val_acc", "width", "latency_ms", "latency_p10_ms", "latency_p90_ms",
                 "train_seconds", "images_per_s", "wall_seconds")
INT_COLUMNS = ("macs", "params", "epochs")  # nullable: failed trials may lack them


class RunError(ValueError):
    """A user-fixable problem with the run directory given to an analysis command."""


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
        return ArchConfig(
            mca=tuple(bool(row[c]) for c in MCA_COLUMNS),
            kernels=str(row["kernels"]),
            ratio=int(row["ratio"]),
            width=float(row["width"]),
            dw_size=int(row["dw_size"]),
        )


def load_run(path: str | Path, allow_empty: bool = False) -> RunData:
    """Read `<run>/run.json` and `<run>/trials.csv`; RunError (one line) if it is not a usable run.

    A run without any finished trial is an error for reports and selection;
    progress displays of a search that just started pass `allow_empty=True`
    and get a typed, empty `trials` frame.
    """
    path = Path(path)
    run_file = path / RUN_FILE
    if not run_file.is_file():
        raise RunError(f"{path} is not a run directory (no {RUN_FILE})")
    try:
        meta = json.loads(run_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{run_file} is not valid JSON ({getattr(exc, 'msg', exc)}); {path} is not a run directory") from None
    if not isinstance(meta, dict):
        raise RunError(f"{run_file} does not hold a JSON object; {path} is not a run directory")
    trials_file = path / TRIALS_FILE
    if not trials_file.is_file():
        raise RunError(f"run {path} has no {TRIALS_FILE} (no trial has been recorded)")
    try:
        rows = read_trials(trials_file)
    except RunDirError as exc:
        raise RunError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"cannot read {trials_file}: {exc}") from None
    if not rows and not allow_empty:
        raise RunError(f"run {path} is empty: {TRIALS_FILE} has no finished trial yet")
    return RunData(path=path, meta=meta, trials=_typed(rows, trials_file))


def _typed(rows: list[dict[str, str]], where: Path) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    bad = sorted(set(df["status"]) - set(STATUSES))
    if bad:
        raise RunError(f"{where}: unknown trial status {bad[0]!r}; expected one of {', '.join(STATUSES)}")
    try:
        df["number"] = df["number"].astype(int)
        for c in MCA_COLUMNS:
            df[c] = df[c].astype(int).astype(bool)
        df["ratio"] = df["ratio"].astype(int)
        df["dw_size"] = df["dw_size"].astype(int)
        for c in FLOAT_COLUMNS:
            df[c] = pd.to_numeric(df[c].replace("", None), errors="raise").astype(float)
        for c in INT_COLUMNS:
            df[c] = pd.to_numeric(df[c].replace("", None), errors="raise").astype(float).round().astype("Int64")
    except (ValueError, TypeError) as exc:
        raise RunError(f"{where} has a malformed value ({exc})") from None
    # Accuracy only means something for trials that trained to the end.
    df.loc[df["status"] != "ok", "val_acc"] = float("nan")
    for c in ("key", "preset", "kernels", "error", "trial_id", "finished_at"):
        df[c] = df[c].fillna("").astype(str)
    df["mca_string"] = ["".join("1" if b else "0" for b in bits) for bits in df[MCA_COLUMNS].itertuples(index=False)]
    df["n_mca"] = df[MCA_COLUMNS].sum(axis=1).astype(int)
    # What users read: a net without MCA has no kernel scales, whatever the field holds.
    df["mca_kernels"] = df["kernels"].where(df["n_mca"] > 0, "-")
    df["label"] = [p if p else f"#{n}" for p, n in zip(df["preset"], df["number"])]
    return df.sort_values("number", kind="stable").reset_index(drop=True)


__all__ = ["RunData", "RunError", "load_run", "check_objectives", "MCA_COLUMNS", "ARCH_COLUMNS"]
