"""analysis.effects: the placement answer from all trainings at once (issue #29).

The statistics are checked on planted effects (a qmc search's real design,
known truth, seeded noise); the command on run directories written as a
search writes them; the costs against the real networks' counts.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from analysis.effects import cli as effects
from analysis.effects.costs import best_placement, block_costs, base_arch, total_cost
from analysis.effects.model import EffectsError, build_design, effect_table, fit, holm
from analysis.effects.sim import qmc_design, simulate, truth
from tests.effects_runs import write_qmc_run

@pytest.fixture(scope="module")
def qmc_run(tmp_path_factory):
    return write_qmc_run(tmp_path_factory.mktemp("effects") / "qmc", n_sampled=60)


def _design(n: int = 60, seed: int = 0, sd: float = 0.0213, rows: pd.DataFrame | None = None):
    rows = qmc_design(n, seed) if rows is None else rows
    rng = np.random.default_rng(seed)
    return build_design(rows.assign(val_acc=truth(rows) + rng.normal(0.0, sd, len(rows))))


def test_holm_matches_statsmodels():
    rng = np.random.default_rng(1)
    for _ in range(5):  # multipletests runs gc.collect() each call (see analysis.effects.model.holm)
        p = rng.uniform(0, 0.3, 16) ** 2
        reject, adjusted = holm(p)
        ref_reject, ref_adjusted, _, _ = multipletests(p, alpha=0.05, method="holm")
        assert np.allclose(adjusted, ref_adjusted) and (reject == ref_reject).all()
    assert holm(np.array([]))[0].size == 0


def test_planted_effects_coverage_power_and_familywise_error():
    """Seeded, 120 simulated runs (the benchmark runs 500 per noise level)."""
    s = simulate(120, designs=4, seed=3)
    assert 0.93 <= s.coverage.mean() <= 0.97, s.lines()
    assert s.coverage.min() >= 0.88, s.lines()  # 120 runs: one effect's Monte-Carlo SD is 2 points
    gap = (s.detection["observed"] - s.detection["stated"]).abs()
    assert (gap <= 0.10).all(), s.lines()
    assert s.fwer <= 0.05 + 1.96 * np.sqrt(0.05 * 0.95 / 120), s.lines()


def test_noise_free_fit_recovers_the_planted_effects():
    rows = qmc_design(60, 0)
    design = build_design(rows.assign(val_acc=truth(rows)))
    table = effect_table(design, fit(design.X, design.y, design.groups)).set_index(["factor", "level"])
    assert table.loc[("mca", "9"), "effect"] == pytest.approx(0.02, abs=1e-9)
    assert table.loc[("mca", "13"), "effect"] == pytest.approx(-0.02, abs=1e-9)
    assert table.loc[("ratio", "4"), "effect"] == pytest.approx(-0.015, abs=1e-9)
    assert table.loc[("kernels", "5-7-11"), "effect"] == pytest.approx(0.005, abs=1e-9)


def test_effects_that_cannot_be_estimated_say_why():
    rows = qmc_design(60, 1)
    rows["mca_5"] = True  # never varied
    rows["mca_8"] = rows["mca_7"]  # NSGA-II converged: two bits move together
    rows["n_mca"] = rows[[f"mca_{i}" for i in range(16)]].sum(axis=1)
    design = _design(rows=rows)
    assert "never varied" in design.dropped["mca=5"]
    assert "mca=7" in design.dropped["mca=8"] and "together" in design.dropped["mca=8"]
    assert any("ratio 1 appears in one architecture only (cnn)" in why for why in design.excluded)
    table = effect_table(design, fit(design.X, design.y, design.groups))
    row = table[(table["factor"] == "mca") & (table["level"] == "5")].iloc[0]
    assert np.isnan(row["effect"]) and "never varied" in row["note"]


def test_too_few_trainings_and_one_architecture_are_refused():
    rows = qmc_design(60, 0).assign(val_acc=0.5)
    with pytest.raises(EffectsError, match=r"has 18 ok trainings of \d+ architectures; its additive model has \d+ parameters and needs at least \d+ architectures"):
        build_design(rows.iloc[:20])
    one = rows[rows["label"] == "ghostnet"]
    with pytest.raises(EffectsError, match="1 ok architecture"):
        build_design(one)


def test_costs_are_the_real_networks():
    """An MCA block's cost is additive and independent of s: a net's MACs = its no-MCA MACs + its blocks."""
    from space import ArchConfig, build_model, count_macs

    design = _design()
    base = base_arch(design)
    arch = ArchConfig(mca=tuple(i in (3, 9, 14) for i in range(16)), kernels=(5, 7, 11), ratio=3)
    blocks = block_costs(base, "5-7-11")
    predicted = total_cost(ArchConfig(mca=(False,) * 16, ratio=3))[0] + blocks["macs"].iloc[[3, 9, 14]].sum()
    assert predicted == total_cost(arch)[0] == count_macs(build_model(arch))
    assert list(blocks["resolution"][:4]) == [32, 16, 16, 8]


def test_placement_respects_the_budget_and_states_its_interval():
    design = _design()
    result = fit(design.X, design.y, design.groups)
    free = best_placement(design, result)
    tight = best_placement(design, result, max_macs=16e6)
    assert tight.macs <= 16e6 and tight.macs == total_cost(tight.arch)[0]
    assert tight.low < tight.predicted < tight.high and tight.predicted <= free.predicted
    with pytest.raises(EffectsError, match="no placement meets the budget macs <= 1000"):
        best_placement(design, result, max_macs=1000)
    with pytest.raises(EffectsError, match="latency source cannot give"):  # no prices passed
        best_placement(design, result, max_latency_ms=3.5)


def test_command_prints_the_table_and_the_sentences(qmc_run, tmp_path, capsys):
    out = tmp_path / "effects.json"
    assert effects.main([str(qmc_run), "--by", "stage", "--json", str(out), "--max-macs", "18e6"]) == 0
    text = capsys.readouterr().out
    assert text.count("\nmca ") == 16
    for words in ("Resolving power: this run detects a bottleneck effect of", "architectures (one training each) of this design",
                  "variance inflation", "Additivity", "By stage", "32x32", "The data's Selective MCA",
                  "ratio 1 appears in one architecture only (cnn)"):
        assert words in text
    payload = json.loads(out.read_text())
    bottlenecks = [e for e in payload["effects"] if e["factor"] == "mca"]
    assert len(bottlenecks) == 16
    for e in bottlenecks:
        assert {"effect", "low", "high", "significant", "macs", "params", "latency_ms"} <= set(e)
        assert e["low"] <= e["effect"] <= e["high"] and e["macs"] > 0
    assert {s["stage"] for s in payload["stages"]} == {"32x32", "16x16", "8x8", "4x4", "2x2"}
    assert payload["placement"]["macs"] <= 18e6 and payload["additivity"]["pairs_tested"] > 100
    assert payload["resolving_power"]["trainings_for_target"] > 0
    assert effects.main([str(qmc_run), "--max-latency-ms", "4", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["placement"]["latency_ms"] <= 4


def _refused(capsys, argv, *expected):
    assert effects.run_main(effects.main, argv, prog=effects.PROG) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for words in expected:
        assert words in err, err


def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    out = tmp_path / "e.json"
    few = write_qmc_run(tmp_path / "few", n_sampled=20, limit=18)
    _refused(capsys, [str(few), "--json", str(out)], "needs at least", "architectures with an ok training")
    one = write_qmc_run(tmp_path / "one", n_sampled=1, limit=2)
    _refused(capsys, [str(one), "--json", str(out)], "1 ok architecture")
    corrupt = write_qmc_run(tmp_path / "corrupt", n_sampled=20)
    table = corrupt / "trials.csv"
    table.write_text(table.read_text().replace(",ok,", ",ok,", 1).replace("\n1,", "\nx,", 1))
    _refused(capsys, [str(corrupt), "--json", str(out)], "malformed")
    assert not out.exists()


def test_budget_nothing_meets_is_refused(qmc_run, tmp_path, capsys):
    out = tmp_path / "e.json"
    _refused(capsys, [str(qmc_run), "--max-macs", "1000", "--json", str(out)], "no placement meets the budget")
    _refused(capsys, [str(qmc_run), "--max-macs", "-3"], "--max-macs must be a positive number")
    assert not out.exists()


def test_select_from_effects_writes_the_placement_and_refuses_an_impossible_budget(qmc_run, tmp_path, capsys):
    from analysis import select
    from space import load_arch

    out = tmp_path / "best.json"
    assert select.main([str(qmc_run), "--from-effects", "--max-macs", "17e6", "-o", str(out)]) == 0
    assert "The data's Selective MCA" in capsys.readouterr().out
    arch = load_arch(out)
    assert total_cost(arch)[0] <= 17e6
    missing = tmp_path / "none.json"
    assert select.run_main(select.main, [str(qmc_run), "--from-effects", "--max-macs", "1000", "-o", str(missing)],
                           prog="analysis.select") == 2
    assert "no placement meets the budget" in capsys.readouterr().err and not missing.exists()


def test_confirm_pick_effects_picks_the_placement(qmc_run):
    """search.confirm --pick effects trains what analysis.select --from-effects writes (the training itself is
    search.confirm's own, tested in test_confirm.py)."""
    from analysis.effects import effects_pick
    from analysis.load import load_run
    from cli_kit import UserError
    from search.confirm import _checked, picked

    args = _checked([str(qmc_run), "--pick", "effects", "--max-macs", "17e6"])
    [(label, arch)] = picked(load_run(qmc_run), args)
    assert label == "effects" and arch == effects_pick(qmc_run, max_macs=17e6)
    with pytest.raises(UserError, match="not with --pick knee"):
        _checked([str(qmc_run), "--pick", "knee", "--max-macs", "17e6"])


def test_sampler_qmc_spreads_the_menu_and_its_design_inflates_little():
    """--sampler qmc is Optuna's scrambled Sobol; its design costs little precision, a skewed one (MCA on in 90 %
    of trainings, as a converging search tends to) costs much more, and the command says how much."""
    import optuna

    from analysis.effects.checks import inflation
    from search.options import parse_args
    from search.searcher import make_sampler

    assert isinstance(make_sampler("qmc", 0, 20), optuna.samplers.QMCSampler)
    assert parse_args(["--sampler", "qmc"]).sampler == "qmc"
    rows = qmc_design(100, 0)
    balanced = inflation(_design(rows=rows))
    skewed_rows = rows.copy()
    rng = np.random.default_rng(0)
    for i in range(16):
        skewed_rows[f"mca_{i}"] = rng.random(len(rows)) < 0.9
    skewed_rows["n_mca"] = skewed_rows[[f"mca_{i}" for i in range(16)]].sum(axis=1)
    skewed_rows["key"] = [f"k{i}" for i in range(len(rows))]
    skewed = inflation(_design(rows=skewed_rows))
    assert balanced.median() < 1.3 and skewed.median() > 2 * balanced.median()
