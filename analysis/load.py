"""Load a run directory into pandas, read-only.

A search may still be running while we read: the trials table is only ever
appended to, and `record.rundir.read_trials` drops a torn last line, so
reading never needs the run's lock (and must never take it, or it would block
the search).  Everything typed here once, so pareto/select/report can treat
columns as numbers without re-parsing strings.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from record.arch import DEFAULT_BACKBONE, arch_columns, from_flat, mca_columns, n_mca_columns
from record.objectives import OBJECTIVES, check_objectives
from record.rundir import (CURVES_FILE, MEASURES, SEED_COLUMN, STATUSES, TRAINED_STATUSES, TRIALS_FILE,
                           RunDirError, column_types, read_curves, read_meta, read_trials)
from record.stats import estimates, pooled_sd
from space import ArchConfig

MCA_COLUMNS = mca_columns()  # GhostNet's 16 placement bits; other backbones: `placement_columns(df)`
ARCH_COLUMNS = arch_columns()

RunError = RunDirError  # a user-fixable problem with the run directory given to an analysis command


def placement_columns(df: pd.DataFrame) -> list[str]:
    """The `mca_i` columns of a trials frame (16 for GhostNet, 27 for ResNet-56, ...)."""
    return mca_columns(n_mca_columns(df.columns))


@dataclass
class RunData:
    """One run: its directory, its settings (run.json) and its trials as a typed DataFrame.

    `trials` holds one row per training (an architecture trained with K seeds
    has K rows); `archs` one row per architecture, its objectives averaged
    over its ok seeds, with `val_acc_se` (record.stats), `n_seeds` (ok seeds
    averaged), `trainings` and `seeds`.  `ok` — what fronts, plots and
    selection use — is the architectures with at least one ok seed.
    """

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
    def n_val(self) -> int | None:
        """Validation images per training (None for runs recorded before the size was)."""
        sizes = self.meta.get("data_sizes") or {}
        value = sizes.get("val") or self.meta.get("val_size")
        return int(value) if value else None

    @property
    def sd_seed(self) -> float | None:
        """The run's seed noise: pooled SD of val_acc over architectures with ≥ 2 ok seeds."""
        ok = self.trials[self.trials["status"] == "ok"]
        return pooled_sd(ok.groupby("key", sort=False)["val_acc"].apply(list))

    @property
    def seeded_archs(self) -> int:
        """Architectures the seed noise is pooled over (≥ 2 ok seeds)."""
        return int((self.archs["n_seeds"] >= 2).sum())

    @cached_property
    def archs(self) -> pd.DataFrame:
        return aggregate(self.trials, self.n_val)

    @property
    def ok(self) -> pd.DataFrame:
        """Architectures that trained to the end at least once: the only ones with an accuracy (means)."""
        return self.archs[self.archs["status"] == "ok"]

    @cached_property
    def curves(self) -> pd.DataFrame:
        """Learning curves (curves.csv) of finished trainings, one row per epoch, with the training's
        `status` and `label`; empty for runs recorded before curves were."""
        try:
            rows = read_curves(self.path / CURVES_FILE)
        except (OSError, UnicodeDecodeError) as exc:
            raise RunError(f"cannot read {self.path / CURVES_FILE}: {exc}") from None
        columns = ["key", "seed", "epoch", "val_acc", "train_loss", "seconds", "status", "label", "number"]
        if not rows:
            return pd.DataFrame(columns=columns)
        df = pd.DataFrame(rows)
        try:
            df["seed"] = df["seed"].astype(int)
            df["epoch"] = df["epoch"].astype(int)
            for c in ("val_acc", "train_loss", "seconds"):
                df[c] = pd.to_numeric(df[c].replace("", None), errors="raise").astype(float)
        except (ValueError, TypeError) as exc:
            raise RunError(f"{self.path / CURVES_FILE} has a malformed value ({exc})") from None
        done = self.trials[["key", SEED_COLUMN, "status", "label", "number"]].dropna(subset=[SEED_COLUMN])
        done = done.astype({SEED_COLUMN: int}).rename(columns={SEED_COLUMN: "seed"})
        return df.merge(done, on=["key", "seed"], how="inner")[columns]

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
    trials = _typed(columns, rows, trials_file)
    # Tables read before a search reopened them may predate the seed column: those runs used their seed.
    missing = trials[SEED_COLUMN].isna() & trials["status"].isin(TRAINED_STATUSES)
    trials.loc[missing, SEED_COLUMN] = int(meta.get("seed", 0) or 0)
    return RunData(path=path, meta=meta, trials=trials)


def aggregate(trials: pd.DataFrame, n_val: int | None) -> pd.DataFrame:
    """One row per architecture (first-seen order): objectives and measures averaged over its
    ok seeds, `val_acc_se` from `record.stats`, `n_seeds`, `trainings`, `seeds` ("0 1 2").

    The architecture columns, `number` (its first training), `label` and
    `preset` come from its first row; `status` is "ok" once any seed is ok,
    else its last training's status.
    """
    extra = {"val_acc_se": pd.Series(dtype=float), "n_seeds": pd.Series(dtype=int),
             "trainings": pd.Series(dtype=int), "seeds": pd.Series(dtype=str)}
    if trials.empty:
        return trials.assign(**extra)
    first = trials.drop_duplicates("key", keep="first").set_index("key", drop=False)
    keys = list(first.index)
    ok = trials[trials["status"] == "ok"]
    numeric = [c for c in (*OBJECTIVES, *MEASURES) if c in trials.columns]
    means = ok.groupby("key", sort=False)[numeric].mean()
    archs = first.copy()
    has_ok = archs.index.isin(means.index)
    for c in numeric:
        values = archs[c].astype(float)
        values[has_ok] = means.loc[archs.index[has_ok], c].to_numpy(dtype=float)
        archs[c] = values.round().astype("Int64") if str(trials[c].dtype) == "Int64" else values
    last_status = trials.groupby("key", sort=False)["status"].last()
    archs["status"] = np.where(has_ok, "ok", last_status.loc[keys].to_numpy())
    archs.loc[~has_ok, "val_acc"] = np.nan
    groups = {k: list(ok.loc[ok["key"] == k, "val_acc"]) for k in keys}
    est = estimates(groups, n_val)
    archs["val_acc_se"] = [est[k].se if est[k].n else np.nan for k in keys]
    archs["n_seeds"] = [est[k].n for k in keys]
    trained = trials[trials["status"].isin(TRAINED_STATUSES)]
    archs["trainings"] = [int((trained["key"] == k).sum()) for k in keys]
    archs["seeds"] = [" ".join(str(int(v)) for v in trained.loc[trained["key"] == k, SEED_COLUMN].dropna())
                      for k in keys]
    return archs.reset_index(drop=True)


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


def typed_table(path: Path, read, ints: Sequence[str], floats: Sequence[str]) -> pd.DataFrame | None:
    """A re-training table of a run (`fidelity.csv`, `confirm.csv`) read with `read` into a typed frame:
    `ints` as int, `floats` as float (an empty cell is NaN); None when the command never ran there, and
    one RunError line for a cell that is not a number."""
    if not path.is_file():
        return None
    df = pd.DataFrame(read(path))
    if df.empty:
        return df
    try:
        for c in ints:
            df[c] = pd.to_numeric(df[c]).astype(int)
        for c in floats:
            df[c] = pd.to_numeric(df[c].replace("", None)).astype(float)
    except (ValueError, TypeError) as exc:
        raise RunError(f"{path} has a malformed value ({exc})") from None
    return df


__all__ = ["RunData", "RunError", "load_run", "check_objectives", "MCA_COLUMNS", "ARCH_COLUMNS", "placement_columns"]
