"""optuna-dashboard, pointed at a run's study.db, names the objectives and says what a trial is."""
from __future__ import annotations

import json
from wsgiref.util import setup_testing_defaults

import optuna

from search.study import STUDY_NAME, TRIAL_VALUES, open_study

OBJECTIVES = ["val_acc", "macs", "latency_ms"]
DIRECTIONS = ["maximize", "minimize", "minimize"]


def dashboard_study(storage_url: str) -> dict:
    """The study as optuna-dashboard's own JSON API serves it to the page (its WSGI app, in process)."""
    from optuna_dashboard import wsgi

    app = wsgi(storage_url)

    def get(path: str) -> dict:
        environ: dict = {}
        setup_testing_defaults(environ)
        environ["PATH_INFO"] = path
        status: list[str] = []
        body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
        assert status == ["200 OK"], (path, status, body[:500])
        return json.loads(body)

    (summary,) = get("/api/studies")["study_summaries"]
    assert summary["study_name"] == STUDY_NAME
    return get(f"/api/studies/{summary['study_id']}")


def test_a_run_from_before_gets_named_objectives_and_the_note_when_it_resumes(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    old = optuna.create_study(storage=url, study_name=STUDY_NAME, directions=DIRECTIONS)  # as runs were created
    old.add_trial(optuna.trial.create_trial(values=[0.4, 1.4e7, 13.7]))
    assert "objective_names" not in dashboard_study(url), "unnamed: the dashboard shows Objective 0, 1, 2"
    for _ in range(2):  # resuming twice changes nothing more
        study = open_study(url, OBJECTIVES, DIRECTIONS)
    shown = dashboard_study(url)
    assert shown["objective_names"] == OBJECTIVES and shown["directions"] == DIRECTIONS
    assert shown["note"] == {"version": 1, "body": "## What a trial is\n\n" + TRIAL_VALUES}
    assert {"key": "trial_values", "value": TRIAL_VALUES} in shown["user_attrs"]
    assert "mean over the architecture's seeds" in TRIAL_VALUES and "one row per training" in TRIAL_VALUES
    assert len(shown["trials"]) == 1 and study.trials[0].values == [0.4, 1.4e7, 13.7]
