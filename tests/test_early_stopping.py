"""--scheduler moasha end to end: real Ray Tune, real Optuna storage, the real CIFAR sample.

Stopped trainings are recorded with their epoch and rung accuracy, the
learning curves are durable and healed on resume, a kill -9 + --resume
neither re-trains nor un-stops anything, and NSGA-II keeps proposing new
architectures after stopped trials (TPE too: tests/test_searcher.py drives
both samplers through stopped trials on a real study without a cluster).
"""
from __future__ import annotations

import csv
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from commands import in_process
from record.rundir import TRAINED_STATUSES
from search.searcher import STUDY_NAME
from space import SearchSpace
from test_search import _start, read_rows, search, smoke_args


def read_curves(run: Path) -> list[dict[str, str]]:
    with open(run / "curves.csv", newline="") as f:
        return list(csv.DictReader(f))


def moasha_args(cifar_dir: Path, storage: Path, name: str, sampler: str, trials: int, address: str) -> list[str]:
    return smoke_args(cifar_dir, storage, name, "--trials", str(trials), "--sampler", sampler,
                      "--population-size", "4", "--scheduler", "moasha", "--rungs", "1,3", "--reduction-factor", "4",
                      "--epochs", "3", "--train-size", "256", "--baseline-seeds", "1", "--objectives", "val_acc,macs",
                      "--max-concurrent", "2", "--address", address)


def _wait_for(proc, run: Path, status: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run / "trials.csv").exists() and any(r["status"] == status for r in read_rows(run)):
            return
        assert proc.poll() is None, "search ended before a training was stopped: " + proc.stderr.read()[-2000:]
        time.sleep(0.2)
    raise AssertionError(f"no {status} row in {run} after {timeout} s")


def check_run(run: Path, trials: int) -> list[dict[str, str]]:
    """What every moasha run must satisfy; returns its rows."""
    rows = read_rows(run)
    trained = [r for r in rows if r["status"] in TRAINED_STATUSES]
    assert len(trained) == trials, "--trials counts trainings, stopped ones included"
    pairs = [(r["key"], r["seed"]) for r in trained]
    assert len(set(pairs)) == len(pairs), "no (architecture, seed) pair is trained twice"
    stopped = [r for r in rows if r["status"] == "stopped"]
    assert stopped, "some trainings are stopped at the first rung"
    for r in stopped:
        assert r["epochs"] == "1" and r["val_acc"] != "" and not r["preset"], "stopped at rung 1, baselines never"
    curves = read_curves(run)
    epochs = Counter((c["key"], c["seed"]) for c in curves)
    assert len({(c["key"], c["seed"], c["epoch"]) for c in curves}) == len(curves), "each epoch once"
    for r in trained:
        if r["status"] in ("ok", "stopped"):
            assert epochs[(r["key"], r["seed"])] == int(r["epochs"]), "a curve row per epoch trained"
    assert set(epochs) <= set(pairs), "no curve of a training that did not finish"
    last = {(c["key"], c["seed"]): c for c in curves}
    for r in stopped:
        assert float(last[(r["key"], r["seed"])]["val_acc"]) == pytest.approx(float(r["val_acc"]))
    # The sampler was told each stopped training's rung values (COMPLETE), and nothing is left open.
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{run / 'study.db'}")
    space = SearchSpace()
    told = {}
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        told[space.from_params(t.params).key] = t.values
    for r in stopped:
        assert told[r["key"]] == pytest.approx([float(r["val_acc"]), float(r["macs"])])
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    return rows


@pytest.mark.e2e
def test_moasha_stops_records_and_survives_sigkill(ray_cluster, cifar_dir, tmp_path, browser):
    """12 trainings, 3 epochs, rungs at 1 and 3, eta 4, NSGA-II with a population of 4 (so it breeds
    from generations that hold stopped trials); kill -9 once a training was stopped, then --resume."""
    args = moasha_args(cifar_dir, tmp_path, "mo", "nsga2", 12, ray_cluster)
    run = tmp_path / "mo"
    proc = _start(args)
    _wait_for(proc, run, "stopped")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    before = read_rows(run)
    stopped_before = {(r["key"], r["seed"]) for r in before if r["status"] == "stopped"}
    done = search(*args[:-2], "--resume", "--address", ray_cluster)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    rows = check_run(run, 12)
    assert rows[: len(before)] == before, "finished and stopped trainings are kept as they were"
    after = Counter((r["key"], r["seed"]) for r in rows)
    assert all(after[p] == 1 for p in stopped_before), "a stopped training is neither re-trained nor un-stopped"
    assert "scheduler: moasha, rungs at epochs 1,3 of 3" in done.stdout
    assert re.search(r"failed \d+ stopped \d+ front", done.stdout), "progress lines count the stopped trainings"

    # The report shows them as such: a note, and grey stopped curves ending at rung 1, in Chromium.
    from analysis.report import write_report
    from test_report_browser import finish, open_report

    out = write_report([run], tmp_path / "report.html")
    page, errors, blocked = open_report(browser, out)
    assert page.locator("#note-stopped").count() == 1
    traces = page.evaluate("() => document.getElementById('fig-curves').data.map(t => [t.legendgroup, t.x.length])")
    n_stopped = sum(1 for r in rows if r["status"] == "stopped")
    n_ok = sum(1 for r in rows if r["status"] == "ok")
    assert sorted(traces) == sorted([["stopped", 1]] * n_stopped + [["ok", 3]] * n_ok)
    assert page.locator("#fig-curves .scatterlayer .trace").count() == len(traces)
    finish(page, errors, blocked, "report-moasha.png")


@pytest.mark.parametrize("args, message", [
    (["--rungs", "1"], "--scheduler moasha only"),
    (["--scheduler", "asha"], "unknown --scheduler 'asha'"),
    (["--scheduler", "moasha", "--reduction-factor", "1"], "--reduction-factor must be greater than 1"),
    (["--scheduler", "moasha", "--rungs", "1,x"], "--rungs expects integers"),
    (["--scheduler", "moasha", "--epochs", "1"], "needs a rung below the budget's 1 epochs"),
    (["--scheduler", "moasha", "--epochs", "3", "--rungs", "2,5"], "--rungs must be epoch counts from 1 to"),
    (["--scheduler", "moasha", "--objectives", "macs,params"], "include val_acc in --objectives"),
])
def test_bad_scheduler_flags_exit_2(cifar_dir, tmp_path, args, message):
    done = in_process("search.run", *smoke_args(cifar_dir, tmp_path, "bad", *args))
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
