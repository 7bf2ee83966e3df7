"""Accuracy you can trust: val_acc ± se, seeds in the table, the validation size, decisions within noise.

The statistic is checked against numpy; the synthetic runs (tests/runbuilder.py)
hold real architectures and MAC counts with made-up, seeded accuracies; the
split uses the real CIFAR-10 sample.
"""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.cli import run_main
from analysis.load import load_run
from analysis.pareto import fixed_box, hypervolume_history, pareto_front
from analysis.report import write_report
from analysis.select import main as select_main
from record.rundir import SEED_COLUMN, TRIALS_FILE, RunDir, trial_columns
from record.stats import Estimate, cheaper_within_noise, estimates, pooled_sd, standard_error, within_noise
from runbuilder import build_run
from trainer.budget import get_budget
from trainer.data import default_val_size, load_cifar10, split_train_val
from trainer.proxy import proxy_split


# ------------------------------------------------------------------ the statistic
def numpy_se(groups: dict[str, list[float]], n_val: int) -> dict[str, tuple[float, float]]:
    """(mean, se) by the formula of record/stats.py, computed independently with numpy."""
    multi = [np.array(v) for v in groups.values() if len(v) >= 2]
    sd2 = sum(np.var(v, ddof=1) * (len(v) - 1) for v in multi) / sum(len(v) - 1 for v in multi)
    out = {}
    for k, v in groups.items():
        p = np.mean(v)
        out[k] = (p, np.sqrt(sd2 / len(v) + p * (1 - p) / n_val / len(v)))
    return out


def test_mean_and_standard_error_match_numpy():
    rng = np.random.default_rng(0)
    groups = {f"a{i}": list(0.4 + 0.03 * rng.standard_normal(n)) for i, n in enumerate([1, 2, 3, 5, 1, 4])}
    got = estimates(groups, n_val=1034)
    for k, (mean, se) in numpy_se(groups, 1034).items():
        assert got[k].mean == pytest.approx(mean, abs=1e-12) and got[k].se == pytest.approx(se, rel=1e-12)
        assert got[k].n == len(groups[k])
    multi = [np.array(v) for v in groups.values() if len(v) > 1]
    assert pooled_sd(groups.values()) == pytest.approx(
        np.sqrt(sum(((v - v.mean()) ** 2).sum() for v in multi) / sum(len(v) - 1 for v in multi)))


def test_unknown_noise_terms_are_left_out_not_zeroed():
    assert pooled_sd([[0.5], [0.4]]) is None  # nothing to pool: one seed each
    assert standard_error(0.5, 2, None, 1000) == pytest.approx(math.sqrt(0.25 / 1000 / 2))  # binomial only
    assert standard_error(0.5, 2, 0.02, None) == pytest.approx(0.02 / math.sqrt(2))  # seed noise only
    assert math.isnan(standard_error(0.5, 1, None, None))
    unknown = Estimate(0.5, math.nan, 1)
    assert not within_noise(unknown, Estimate(0.5, 0.01, 1)), "unknown noise never makes two designs equal"
    assert unknown.show() == "0.5000 ± ?"


def test_within_noise_and_the_cheaper_equivalent():
    a, b, c = Estimate(0.50, 0.01, 3), Estimate(0.48, 0.01, 3), Estimate(0.40, 0.01, 3)
    assert within_noise(a, b) and not within_noise(a, c)  # 0.02 < 2·0.0141 < 0.10
    items = [("a", a, [30.0]), ("b", b, [20.0]), ("c", c, [10.0])]
    assert cheaper_within_noise(items) == {"a": "b"}
    # with two costs, "cheaper" means no worse on both
    items = [("a", a, [30.0, 1.0]), ("b", b, [20.0, 2.0])]
    assert cheaper_within_noise(items) == {}


# ------------------------------------------------------------ validation size
def test_default_validation_size_rule():
    assert default_val_size(5170) == 1034  # the sample: 20 %, 80 % left to train on
    assert default_val_size(50_000) == 5000  # CIFAR-10
    assert default_val_size(30_000) == 5000 and default_val_size(100_000) == 10_000


def test_split_by_count_is_exact_stratified_and_seeded(cifar_dir):
    labels = load_cifar10(cifar_dir).train_labels
    train, val = split_train_val(labels, None, seed=3, val_size=1034)
    assert len(val) == 1034 and len(train) + len(val) == len(labels)
    assert not set(train.tolist()) & set(val.tolist())
    share = torch.bincount(labels[val], minlength=10).float() / torch.bincount(labels, minlength=10).float()
    assert torch.allclose(share, torch.full((10,), 1034 / len(labels)), atol=0.003)
    assert not torch.equal(val, split_train_val(labels, None, seed=4, val_size=1034)[1])
    with pytest.raises(ValueError, match="val_size"):
        split_train_val(labels, None, seed=0, val_size=len(labels))


def test_proxy_split_takes_the_budgets_count(cifar_dir):
    data = load_cifar10(cifar_dir)
    train, val = proxy_split(data, get_budget("smoke", val_size=300), seed=0)
    assert (len(train), len(val)) == (1024, 300)
    train, val = proxy_split(data, get_budget("cpu"), seed=0)
    assert len(val) == 1034 and len(train) == len(data.train_labels) - 1034  # the default rule
    legacy = proxy_split(data, get_budget("cpu", val_fraction=0.1), seed=0)[1]
    assert torch.equal(legacy, split_train_val(data.train_labels, 0.1, seed=0)[1]), "old runs keep their split"


# ------------------------------------------------------------ the trials table
def test_a_table_from_before_seeds_loads_and_is_rewritten_once(tmp_path):
    run = build_run(tmp_path / "old", 2, statuses=["ok", "ok", "ok", "infeasible", "ok", "failed"], seed=7)
    table = run / TRIALS_FILE
    old_columns = [c for c in trial_columns() if c != SEED_COLUMN]
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(table, "w", newline="") as f:  # the table as runs before seeds wrote it
        writer = csv.DictWriter(f, old_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    meta = json.loads((run / "run.json").read_text())
    for key in ("data_sizes", "val_size", "baseline_seeds", "repeats"):
        meta.pop(key)
    (run / "run.json").write_text(json.dumps(meta))

    data = load_run(run)  # read-only: the run's seed fills in
    assert list(data.trials[SEED_COLUMN].astype("float").fillna(-1)) == [7, 7, 7, -1, 7, 7]
    assert data.n_val is None and data.archs["val_acc_se"].isna().all(), "no noise known: SE unknown, not 0"

    opened = RunDir.open(run)
    opened.close()
    with open(table, newline="") as f:
        new_rows = list(csv.DictReader(f))
    assert list(new_rows[0]) == trial_columns()
    assert [r[SEED_COLUMN] for r in new_rows] == ["7", "7", "7", "", "7", "7"]
    assert [r["val_acc"] for r in new_rows] == [r["val_acc"] for r in rows]


def test_archs_average_their_seeds(tmp_path):
    run = build_run(tmp_path / "seeded", 3, seeds=3, seed=0)
    data = load_run(run)
    assert len(data.trials) == 7 * 3 and len(data.archs) == 7 and len(data.ok) == 7
    groups = {k: list(g["val_acc"]) for k, g in data.trials.groupby("key", sort=False)}
    expected = numpy_se(groups, 1034)
    for _, r in data.archs.iterrows():
        assert r["n_seeds"] == 3 and r["seeds"] == "0 1 2"
        assert (r["val_acc"], r["val_acc_se"]) == pytest.approx(expected[r["key"]], rel=1e-12)
    assert data.sd_seed == pytest.approx(pooled_sd(groups.values()))


# ------------------------------------------------------------ decisions within noise
def flat(cfg, macs, seed):
    """Accuracy rising 0.001 per million MACs, ± 0.01 between seeds: every difference is within noise."""
    return 0.40 + 0.001 * macs / 1e6 + 0.01 * (seed - 1)


def steep(cfg, macs, seed):
    """Only the costliest preset is better, by 0.3: far outside the noise."""
    return (0.70 if cfg.n_mca == 16 else 0.40) + 0.005 * (seed - 1)


def expected_cheaper(run, pick_number: int) -> int | None:
    """The cheapest front member within 2 SE of the pick, computed with numpy from the table."""
    data = load_run(run)
    ok = data.trials[data.trials["status"] == "ok"]
    groups = {k: list(g["val_acc"]) for k, g in ok.groupby("key", sort=False)}
    stats = numpy_se(groups, 1034)
    front = pareto_front(data.ok, ["val_acc", "macs"])
    pick = data.ok[data.ok["number"] == pick_number].iloc[0]
    pm, ps = stats[pick["key"]]
    best = None
    for _, r in front.sort_values("macs").iterrows():
        m, s = stats[r["key"]]
        if r["macs"] < pick["macs"] and abs(pm - m) < 2 * np.hypot(ps, s):
            best = r
            break
    return None if best is None else int(best["number"])


@pytest.mark.parametrize("accuracy, within", [(flat, True), (steep, False)])
def test_select_says_when_its_pick_is_not_significantly_better(tmp_path, capsys, accuracy, within):
    run = build_run(tmp_path / "run", 3, seeds=3, accuracy=accuracy)
    status = run_main(select_main, [str(run), "--max-macs", "30e6", "-o", str(tmp_path / "best.json")],
                      prog="analysis.select")
    out = capsys.readouterr().out
    assert status == 0
    data = load_run(run)
    pick = data.ok.sort_values("val_acc").iloc[-1]
    cheaper = expected_cheaper(run, int(pick["number"]))
    assert (cheaper is not None) == within
    if within:
        label = data.ok.loc[data.ok["number"] == cheaper, "label"].iloc[0]
        assert f"{pick['label']} (val_acc " in out
        assert f"is not significantly better than the cheaper front member {label} (val_acc " in out
        assert f"consider {label}" in out
    else:
        assert "not significantly better" not in out
    assert "val_acc_se" in out and "n_seeds" in out


def test_report_marks_front_members_within_noise(tmp_path):
    run = build_run(tmp_path / "flat", 3, seeds=3, accuracy=flat)
    text = write_report([run], tmp_path / "flat.html").read_text()
    front = pareto_front(load_run(run).ok, ["val_acc", "macs"])
    assert len(front) >= 3
    assert text.count('class="within-noise"') + text.count('class="knee within-noise"') == len(front) - 1
    assert 'id="note-within-noise"' in text and 'id="note-knee-noise"' in text and 'id="note-noise"' in text
    assert "seed noise 0.0100 SD (pooled over 7 architectures with ≥ 2 seeds)" in text
    assert " ± " in text
    # Only the costliest preset is better, far outside the noise: the knee is marked, no member within noise.
    steep_run = build_run(tmp_path / "steep", 3, seeds=3, accuracy=steep)
    text = write_report([steep_run], tmp_path / "steep.html").read_text()
    assert text.count('<tr class="knee" ') == 1
    assert "within-noise" not in text
    assert 'id="note-knee-noise"' not in text


# ------------------------------------------------------------ hypervolume on a fixed box
def test_hypervolume_box_does_not_move_with_the_trials(tmp_path):
    """The curve keeps rising after the baselines when a later trial beats them, and --compare reuses the box."""
    def better_later(cfg, macs, seed):
        return 0.3 if cfg.ratio == 1 or cfg.n_mca in (0, 6, 16) else 0.3 + 0.02 * (seed + 1) + 0.002 * cfg.n_mca
    run = build_run(tmp_path / "a", 4, seeds=1, accuracy=better_later)
    data = load_run(run)
    box, origin = fixed_box(data.archs, ["val_acc", "macs"])
    costliest = float(data.ok.loc[data.ok["preset"] != "", "macs"].max())
    assert box == {"val_acc": (1.0, 0.1), "macs": (0.0, 2 * costliest)}
    assert origin["val_acc"] == "chance accuracy" and "baseline" in origin["macs"]
    hist = hypervolume_history(data.trials, ["val_acc", "macs"], box=box)
    after_baselines, final = hist["hypervolume"].iloc[3], hist["hypervolume"].iloc[-1]
    assert 0 < after_baselines < final <= 1
    # A second seed that lowers a front member's mean moves the curve back down.
    trials = pd.concat([data.trials, data.trials.iloc[[-1]].assign(number=len(data.trials), val_acc=0.1)],
                       ignore_index=True)
    moved = hypervolume_history(trials, ["val_acc", "macs"], box=box)["hypervolume"]
    assert moved.iloc[-1] < final
    other = build_run(tmp_path / "b", 2, seed=0, baselines=False, name="b")
    text = write_report([run, other], tmp_path / "c.html").read_text()
    assert 'id="note-compare-hv-reference"' in text and f"{2 * costliest / 1e6:.2f}M" in text
