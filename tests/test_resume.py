"""Kills and resumes: a search SIGKILLed mid-training continues with --resume, keeping what it had (real Ray).

Split from test_search.py so the end-to-end layer's two workers get units of
similar length (pytest-xdist keeps a file on one worker).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from record.rundir import TRAINED_STATUSES
from space import PRESETS
from test_search import REPO, SMALL, _start, _wait_for_rows, read_rows, search, smoke_args


@pytest.mark.e2e
def test_resume_after_sigkill(ray_cluster, cifar_dir, tmp_path):
    args = smoke_args(cifar_dir, tmp_path, "killed", "--trials", "5", "--train-size", "256",
                      "--objectives", "val_acc,macs",
                      "--max-concurrent", "1", "--baseline-seeds", "1", "--address", ray_cluster, "--layout", "nchw")
    proc = subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    table = tmp_path / "killed" / "trials.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if table.exists() and len(read_rows(table.parent)) >= 2:
            break
        assert proc.poll() is None, "search ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    before = read_rows(table.parent)
    assert 2 <= len(before) < 5

    done = search(*args, "--resume")
    assert done.returncode == 0, done.stderr
    after = read_rows(table.parent)
    assert after[: len(before)] == before, "finished trials are kept as they were"
    trained = [r for r in after if r["status"] in TRAINED_STATUSES]
    assert len(trained) == 5
    assert len({r["key"] for r in after}) == len(after), "no architecture trained twice"
    meta = json.loads((table.parent / "run.json").read_text())
    assert meta["attempts"] == 2
    # The layout it was created with (--layout nchw) is kept by the resumed attempt.
    assert meta["layout_choice"]["layout"] == "nchw" and meta["budget_settings"]["channels_last"] is False
    refused = search(*[a for a in args if a not in ("--layout", "nchw")], "--layout", "channels_last", "--resume")
    assert refused.returncode == 2 and "created with layout='nchw'" in refused.stderr


@pytest.mark.e2e
def test_a_torn_line_written_during_the_search_does_not_stop_it(ray_cluster, cifar_dir, tmp_path):
    """Someone (or a crash) leaves half a line in trials.csv while the search runs: it heals and finishes."""
    run = tmp_path / "torn"
    proc = _start(smoke_args(cifar_dir, tmp_path, "torn", "--trials", "4", "--no-baselines", "--epochs", "1",
                             "--train-size", "256", "--objectives", "val_acc,macs", "--max-concurrent", "1",
                             "--address", ray_cluster))
    _wait_for_rows(proc, run, 1)
    with open(run / "trials.csv", "a") as f:
        f.write("99,torn_trial,ok,mca=0101")  # no newline: a torn line
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert "cut a torn line" in out and "Pareto front (" in out and "finished: 4/4 trials" in out
    rows = read_rows(run)
    assert len(rows) == 4 and [r["number"] for r in rows] == ["0", "1", "2", "3"]
    assert all(r["trial_id"] != "torn_trial" for r in rows)


@pytest.mark.e2e
def test_resume_with_only_the_name_keeps_every_stored_setting(ray_cluster, cifar_dir, tmp_path):
    """A run started with non-default flags continues from `--name N --resume` alone (kill -9 between)."""
    flags = ["--budget", "smoke", "--epochs", "1", "--train-size", "256", *SMALL, "--objectives", "val_acc,macs",
             "--no-baselines", "--seed", "5", "--data-dir", str(cifar_dir)]
    where = ["--storage-path", str(tmp_path), "--name", "flags", "--no-report", "--address", ray_cluster]
    proc = _start([*where, *flags, "--trials", "3", "--max-concurrent", "1"])
    run = tmp_path / "flags"
    _wait_for_rows(proc, run, 1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    before = read_rows(run)
    assert 1 <= len(before) < 3

    done = search(*where, "--resume")  # no data dir, budget, objectives, seed or baseline flags
    assert done.returncode == 0, done.stderr
    rows = read_rows(run)
    assert len(rows) == 3 and rows[: len(before)] == before
    assert all(r["preset"] == "" and r["epochs"] == "1" for r in rows), "stored --no-baselines and --epochs"
    # What the resumed attempt ran with, not a substring the defaults (val_acc,macs,latency_ms) also hold.
    started = re.search(r"^searching: (\d+) trials to go of 3, sampler \w+, objectives ([\w,]+), ", done.stdout, re.M)
    assert started is not None, done.stdout
    assert started.groups() == (str(3 - len(before)), "val_acc,macs")
    assert [r["seed"] for r in rows] == ["5"] * 3, "stored --seed: every training's seed"
    meta = json.loads((run / "run.json").read_text())
    assert meta["data_dir"] == str(cifar_dir.resolve()) and meta["baselines"] is False

    again = search(*where, "--resume", *flags)  # every stored flag repeated with its value
    assert again.returncode == 0, again.stderr
    assert "all 3 trials are already finished" in again.stdout

    changed = search(*where, "--resume", "--epochs", "2")
    assert changed.returncode == 2 and len(changed.stderr.strip().splitlines()) == 1
    assert "created with epochs=1" in changed.stderr


@pytest.mark.e2e
def test_seeds_and_repeats_across_sigkill(ray_cluster, cifar_dir, tmp_path):
    """Baselines with 2 seeds, --repeats 2, a kill -9 in the middle and --resume (real Ray, real Optuna).

    The 6 trainings are the 3 feasible baselines x 2 seeds; their second seeds
    take the searcher's repeat path (`ArchSearcher._next_repeat`, a seed in
    the trial config), which test_searcher drives for --repeats proper.
    Every architecture trained with K seeds has K rows; its mean and standard
    error are numpy's on them; no (architecture, seed) pair is trained twice;
    the study's newest trial of each architecture carries its mean.
    """
    import numpy as np
    import optuna

    from analysis.load import load_run
    from search.searcher import STUDY_NAME
    from space import SearchSpace, build_model, count_macs

    limit = (count_macs(build_model(PRESETS["all_mca"])) + count_macs(build_model(PRESETS["cnn"]))) / 2
    args = smoke_args(cifar_dir, tmp_path, "seeds", "--trials", "6", "--objectives", "val_acc,macs",
                      "--baseline-seeds", "2", "--repeats", "2", "--max-macs", str(limit), "--sampler", "random",
                      "--epochs", "1", "--train-size", "256", "--max-concurrent", "1", "--address", ray_cluster,
                      small=False)  # checks the default validation size
    run = tmp_path / "seeds"
    proc = _start(args)
    _wait_for_rows(proc, run, 3)  # in the middle of the baselines' seeds
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    before = read_rows(run)
    done = search(*args[:-2], "--resume", "--address", ray_cluster)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_rows(run)
    assert rows[: len(before)] == before, "finished trainings are kept as they were"

    trained = [r for r in rows if r["status"] in TRAINED_STATUSES]
    assert len(trained) == 6, "--trials counts trainings"
    pairs = [(r["key"], r["seed"]) for r in trained]
    assert len(set(pairs)) == len(pairs), "no (architecture, seed) pair is trained twice"
    for name in ("cnn", "ghostnet", "selective_mca"):
        seeds = sorted(int(r["seed"]) for r in trained if r["preset"] == name)
        assert seeds == [0, 1], f"{name} has one result per baseline seed"
    assert [r["status"] for r in rows if r["preset"] == "all_mca"] == ["infeasible"]

    meta = json.loads((run / "run.json").read_text())
    assert meta["baseline_seeds"] == 2 and meta["repeats"] == 2 and meta["attempts"] == 2
    assert meta["val_size"] == meta["data_sizes"]["val"] == 1034  # default on the 5,170-image sample
    data = load_run(run)
    accs = {}
    for r in trained:
        if r["status"] == "ok":
            accs.setdefault(r["key"], []).append(float(r["val_acc"]))
    multi = {k: np.array(v) for k, v in accs.items() if len(v) >= 2}
    assert len(multi) >= 3
    sd = np.sqrt(sum(np.var(v, ddof=1) * (len(v) - 1) for v in multi.values())
                 / sum(len(v) - 1 for v in multi.values()))
    archs = data.archs.set_index("key")
    for key, v in multi.items():
        p = v.mean()
        se = np.sqrt(sd ** 2 / len(v) + p * (1 - p) / 1034 / len(v))
        assert archs.loc[key, "n_seeds"] == len(v)
        assert archs.loc[key, "val_acc"] == pytest.approx(np.mean(v), abs=1e-12)
        assert archs.loc[key, "val_acc_se"] == pytest.approx(se, rel=1e-9)

    # The sampler learned the means: each in-menu architecture's newest COMPLETE trial holds its mean.
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{run / 'study.db'}")
    space = SearchSpace()
    newest = {}
    for t in sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.number):
        newest[space.from_params(t.params).key] = t.values
    for key, v in accs.items():
        if key != PRESETS["cnn"].key:  # s=1 is outside the default menu: never an Optuna trial
            assert newest[key][0] == pytest.approx(np.mean(v), abs=1e-12), key
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert " ± " in done.stdout and "noise: seed noise" in done.stdout
