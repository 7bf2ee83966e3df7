"""Kills and resumes: a search SIGKILLed mid-training continues with --resume, keeping what it had (real Ray).

One scenario holds what used to be four searches (each a Ray driver, trainings
and a resume): a run created with non-default flags, killed with kill -9 in the
middle of its baselines' seeds, continued from `--name N --resume` alone, with
a torn line appended to trials.csv while the resumed attempt runs.  Split from
test_search.py so the end-to-end layer's two workers get units of similar
length (pytest-xdist keeps a file on one worker).
"""
from __future__ import annotations

import json
import os
import re
import signal

import pytest

from record.rundir import TRAINED_STATUSES
from space import PRESETS
from test_search import _start, _wait_for_rows, read_rows, search


@pytest.mark.e2e
def test_a_killed_search_resumes_from_its_name_alone_with_seeds_repeats_and_a_torn_line(
        ray_cluster, cifar_dir, tmp_path):
    """Baselines with 2 seeds, --repeats 2, --seed 5, --layout nchw; kill -9 while the baselines' seeds train;
    `--name N --resume` alone continues it (real Ray, real Optuna), while someone (or a crash) leaves half a line
    in trials.csv; it heals and finishes.

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
    # The default validation size (checked below); every flag here but the trials is stored in run.json.
    flags = ["--budget", "smoke", "--epochs", "1", "--train-size", "256", "--objectives", "val_acc,macs",
             "--baseline-seeds", "2", "--repeats", "2", "--max-macs", str(limit), "--sampler", "random",
             "--seed", "5", "--layout", "nchw", "--data-dir", str(cifar_dir)]
    where = ["--storage-path", str(tmp_path), "--name", "killed", "--no-report", "--address", ray_cluster]
    run = tmp_path / "killed"
    proc = _start([*where, *flags, "--trials", "6", "--max-concurrent", "1"])
    _wait_for_rows(proc, run, 3)  # in the middle of the baselines' seeds
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    before = read_rows(run)
    trained_before = [r for r in before if r["status"] in TRAINED_STATUSES]
    assert 1 <= len(trained_before) < 6

    # No data dir, budget, objectives, seed, sampler, layout or baseline flags: the run's own.
    resumed = _start([*where, "--resume"])
    _wait_for_rows(resumed, run, len(before) + 1)
    with open(run / "trials.csv", "a") as f:
        f.write("99,torn_trial,ok,mca=0101")  # no newline: a torn line
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert "cut a torn line" in out and "Pareto front (" in out and "finished: 6/6 trials" in out
    rows = read_rows(run)
    assert rows[: len(before)] == before, "finished trainings are kept as they were"
    assert [r["number"] for r in rows] == [str(i) for i in range(len(rows))]
    assert all(r["trial_id"] != "torn_trial" for r in rows)
    # What the resumed attempt ran with, not a substring the defaults (val_acc,macs,latency_ms) also hold.
    started = re.search(r"^searching: (\d+) trials to go of 6, sampler (\w+), objectives ([\w,]+), ", out, re.M)
    assert started is not None, out
    assert started.groups() == (str(6 - len(trained_before)), "random", "val_acc,macs")

    trained = [r for r in rows if r["status"] in TRAINED_STATUSES]
    assert len(trained) == 6, "--trials counts trainings"
    pairs = [(r["key"], r["seed"]) for r in trained]
    assert len(set(pairs)) == len(pairs), "no (architecture, seed) pair is trained twice"
    for name in ("cnn", "ghostnet", "selective_mca"):
        seeds = sorted(int(r["seed"]) for r in trained if r["preset"] == name)
        assert seeds == [5, 6], f"{name} has one result per baseline seed, from the stored --seed"
    assert [r["status"] for r in rows if r["preset"] == "all_mca"] == ["infeasible"], "the stored --max-macs"
    assert all(r["epochs"] == "1" for r in trained), "the stored --epochs"

    meta = json.loads((run / "run.json").read_text())
    assert meta["baseline_seeds"] == 2 and meta["repeats"] == 2 and meta["attempts"] == 2
    assert meta["val_size"] == meta["data_sizes"]["val"] == 1034  # default on the 5,170-image sample
    assert meta["data_dir"] == str(cifar_dir.resolve())
    # The layout it was created with (--layout nchw) is kept by the resumed attempt.
    assert meta["layout_choice"]["layout"] == "nchw" and meta["budget_settings"]["channels_last"] is False
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
    assert " ± " in out and "noise: seed noise" in out

    again = search(*where, "--resume", *flags)  # every stored flag repeated with its value
    assert again.returncode == 0, again.stderr
    assert "all 6 trials are already finished" in again.stdout
    for changed, says in ((["--epochs", "2"], "created with epochs=1"),
                          (["--layout", "channels_last"], "created with layout='nchw'")):
        refused = search(*where, "--resume", *changed)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert says in refused.stderr
