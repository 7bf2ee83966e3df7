"""The run's Optuna study as Optuna's own tools see it (optuna-dashboard, `optuna.load_study`).

The study lives in `<run>/study.db`; `search.searcher` drives it.  Here it
gets what a person opening it needs: the objectives by name, and a note on
what a trial is — an architecture's mean over its seeds, where `trials.csv`
has one row per training.
"""
from __future__ import annotations

import contextlib
import sqlite3
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from cli_kit import UserError

import optuna

STUDY_NAME = "search"
# What optuna-dashboard (the study's note) and `study.user_attrs` say a trial is: not one row of trials.csv.
TRIAL_VALUES = ("A trial is one architecture (parameters `mca_*`, `kernels`, `ratio`), not one training: its "
                "`val_acc` is the mean over the architecture's seeds, its costs are the real network's. "
                "`trials.csv` in the run directory has one row per training (architecture x seed). When an "
                "architecture's mean changes later (more seeds, a resume) it gets a new trial with the same "
                "parameters and the new mean. `python -m analysis.report RUN` draws the front from the "
                "trainings, with standard errors.")


def open_study(storage_url: str, objectives: Sequence[str], directions: Sequence[str]) -> optuna.Study:
    """The run's study, created or loaded, its objectives named (`set_metric_names`: optuna-dashboard shows
    `val_acc`, not "Objective 0") and a note saying what a trial value is; a run from before either
    existed gets them when it resumes."""
    from optuna_dashboard import save_note

    study = optuna.create_study(storage=storage_url, study_name=STUDY_NAME, load_if_exists=True,
                                directions=list(directions))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if study.metric_names != list(objectives):
            study.set_metric_names(list(objectives))
    if study.user_attrs.get("trial_values") != TRIAL_VALUES:
        study.set_user_attr("trial_values", TRIAL_VALUES)
        save_note(study, "## What a trial is\n\n" + TRIAL_VALUES)
    return study


def repair_study(path: Path, wait_s: float = 10.0) -> str | None:
    """Check a resumed run's study.db before anything uses it; a damaged one is set aside and rebuilt.

    The rule: trials.csv is the record, the study only the sampler's memory of it.  A study.db that
    SQLite cannot read (truncated by a full disk or a copy cut short, overwritten, not a database) is
    renamed to `study.db.damaged-<UTC time>` (kept, never deleted) and the resumed search starts a fresh
    study, which `search.searcher.reconcile_study` fills with every finished architecture of the table
    before the sampler proposes anything.  Returns the sentence saying so (None: nothing to repair).  A
    study another program holds locked is a one-line UserError: nothing is changed.
    """
    if not path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=wait_s)) as con:
            check = con.execute("PRAGMA quick_check").fetchall()
            con.execute("SELECT count(*) FROM studies").fetchall()
        if check != [("ok",)]:
            raise sqlite3.DatabaseError(f"integrity check: {check[0][0]}")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            raise UserError(f"{path} is locked by another program (optuna-dashboard, another search?): close it "
                            "and resume") from None
        return _set_aside(path, exc)
    except sqlite3.DatabaseError as exc:
        return _set_aside(path, exc)
    return None


def _set_aside(path: Path, exc: Exception) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():  # set aside twice within a second: never overwrite the first
        aside, n = path.with_name(f"{path.name}.damaged-{stamp}-{n}"), n + 1
    path.replace(aside)
    for suffix in ("-journal", "-wal", "-shm"):  # SQLite's side files belong to the damaged database
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.replace(aside.with_name(aside.name + suffix))
    return (f"{path.name} could not be read ({exc}): kept as {aside.name}; the search rebuilds its study from "
            "trials.csv (every finished training is kept)")
