"""Scores inherited from supernets: effects with the supernet as the unit of replication, checked on planted data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.effects.model import EffectsError
from analysis.effects.sim import simulate_units
from analysis.effects.units import fit_by_unit


def test_intervals_with_the_supernet_as_unit_cover_and_rows_as_trainings_do_not():
    """Each supernet adds its own random effect vector: 95 % intervals over supernets hold the truth about
    95 % of the time; treating its 200 scores as independent trainings is far too sure of itself."""
    sims = simulate_units(100, supernets=3, archs=200, designs=5, seed=1)
    coverage = sims.groupby("how")["covered"].mean()
    n = len(sims[sims["how"] == "by_unit"])
    half = 1.96 * np.sqrt(0.95 * 0.05 / n)  # Monte-Carlo margin of the pooled coverage
    assert 0.93 - half <= coverage["by_unit"] <= 0.97 + half, coverage
    assert coverage["as_rows"] < 0.85, coverage
    per_effect = sims[sims["how"] == "by_unit"].groupby("name")["covered"].agg(["mean", "count"])
    common = per_effect[per_effect["count"] >= 80]["mean"]
    assert common.min() >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / 100), common.sort_values().head()


def test_one_supernet_is_refused_and_the_combination_is_the_mean_of_the_per_unit_fits():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"const": 1.0, "mca=0": rng.integers(0, 2, 40).astype(float)})
    y = 0.5 + 0.02 * X["mca=0"].to_numpy() + rng.normal(0, 0.01, 40)
    groups = np.arange(40) % 20
    with pytest.raises(EffectsError, match="from 1 supernet"):
        fit_by_unit(X, y, groups, np.zeros(40))
    units = np.arange(40) // 20
    result = fit_by_unit(X, y, groups, units)
    assert result.df_resid == 1 and result.per_unit.shape == (2, 2)
    assert result.params["mca=0"] == pytest.approx(result.per_unit["mca=0"].mean())
    low, high = result.conf_int()[1]
    assert low < result.params["mca=0"] < high
    # The residual variance is each unit's own, averaged: the planted noise (SD 0.01), not the units' spread.
    assert result.scale == pytest.approx(1e-4, rel=0.5)
    shifted = fit_by_unit(X, y + 0.05 * units, groups, units)  # a unit-wide offset is absorbed by each fit
    assert shifted.scale == pytest.approx(result.scale)
    contrast = result.t_test(np.array([0.0, 1.0]))
    assert contrast.value == pytest.approx(result.params["mca=0"]) and contrast.se == pytest.approx(result.bse["mca=0"])
    assert contrast.conf_int() == pytest.approx(result.conf_int()[1:2])
    assert contrast.pvalue == pytest.approx(result.pvalues["mca=0"])


def test_supernets_needed_are_solved_with_the_df_of_each_candidate_count():
    """With K supernets the test has K − 1 df: the count for a target is the smallest K whose own t quantiles
    bring the smallest detectable effect under it (scaling the run's K = 3 quantiles would ask for far more)."""
    from scipy import stats

    from analysis.effects.checks import Resolution
    from analysis.effects.model import ALPHA, POWER

    unit_sd, n, m = 0.005, 3, 16
    se = pd.Series(unit_sd / np.sqrt(n), index=[f"mca={i}" for i in range(m)])
    crit, df = float(stats.t.ppf(1 - ALPHA / (2 * m), n - 1)), n - 1
    res = Resolution(se=se, mde=(crit + stats.t.ppf(POWER, df)) * se, df=df, crit=crit, n=n, unit="supernets")

    def mde(k: int) -> float:
        return (stats.t.ppf(1 - ALPHA / (2 * m), k - 1) + stats.t.ppf(POWER, k - 1)) * unit_sd / np.sqrt(k)

    k = res.trainings_for(0.005)
    assert mde(k) <= 0.005 < mde(k - 1)
    scaled = int(np.ceil(n * (float(res.mde.median()) / 0.005) ** 2))
    assert k < scaled / 5
    archs = Resolution(se=se, mde=res.mde, df=df, crit=crit, n=60)  # architectures: scaled by 1/√n
    assert archs.trainings_for(0.005) == int(np.ceil(60 * (float(res.mde.median()) / 0.005) ** 2))
