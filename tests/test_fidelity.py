"""search.fidelity on a real smoke run: reference re-trainings through Ray Tune, fidelity.csv, τ, the report section."""
from __future__ import annotations

import csv
import shutil
from functools import partial

import pytest

from analysis.report import write_report
from commands import in_process, python_m
from runbuilder import build_run
from test_report_browser import open_report, trace_lengths

fidelity = partial(python_m, "search.fidelity")


@pytest.mark.e2e
def test_fidelity_retrains_front_and_sample_resumably(smoke_run, ray_cluster, tmp_path, browser):
    run = tmp_path / "e2e"
    shutil.copytree(smoke_run[0], run, ignore=shutil.ignore_patterns("ray", ".lock", "report.html"))
    args = [str(run), "--epochs", "2", "--train-size", "256", "--sample", "2", "--address", ray_cluster]
    done = fidelity(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(run / "fidelity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert 3 <= len(rows) <= 6 and all(r["status"] == "ok" and r["epochs"] == "2" for r in rows)
    assert len({r["key"] for r in rows}) == len(rows)
    assert "Kendall tau = " in done.stdout and "(95% bootstrap interval)" in done.stdout
    assert "Spearman rho = " in done.stdout and "top-3 overlap" in done.stdout

    again = fidelity(*args)  # resumable: everything chosen is already there
    assert again.returncode == 0, again.stderr[-3000:]
    assert ", 0 to re-train" in again.stdout
    with open(run / "fidelity.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)

    report = write_report([run], tmp_path / "report.html")
    page, errors, blocked = open_report(browser, report)
    assert errors == [] and blocked == []
    assert page.inner_text("#fidelity h2") == "Can you trust this front?"
    assert trace_lengths(page, "fig-fidelity") == [2, len(rows)]
    assert "Kendall τ" in page.evaluate("() => document.getElementById('fig-fidelity').layout.title.text")
    page.close()


@pytest.mark.parametrize("case, message", [
    ("no-ok", "has no ok trial"),
    ("sample-0", "--sample must be at least 1"),
    ("concurrent-0", "--max-concurrent must be at least 1"),
    ("missing", "is not a run directory"),
])
def test_fidelity_bad_input_is_one_line_exit_2(case, message, tmp_path):
    run = tmp_path / "run"
    if case == "no-ok":
        build_run(run, 1, baselines=False, statuses=["failed"])
    elif case in ("sample-0", "concurrent-0"):
        build_run(run, 2)
    args = [str(run), "--epochs", "2", "--sample", "0" if case == "sample-0" else "2"]
    args += ["--max-concurrent", "0"] if case == "concurrent-0" else []
    done = in_process("search.fidelity", *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert not (run / "fidelity.csv").exists()
