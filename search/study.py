"""The run's Optuna study as Optuna's own tools see it (optuna-dashboard, `optuna.load_study`).

The study lives in `<run>/study.db`; `search.searcher` drives it.  Here it
gets what a person opening it needs: the objectives by name, and a note on
what a trial is — an architecture's mean over its seeds, where `trials.csv`
has one row per training.
"""
from __future__ import annotations

import warnings
from typing import Sequence

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
