"""Rank agreement statistics against SciPy, ties included; bootstrap intervals are reproducible."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis.rank import bootstrap_interval, kendall_tau, spearman_rho

CASES = [
    ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]),
    ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]),
    ([0.41, 0.43, 0.43, 0.46, 0.40, 0.45], [0.53, 0.61, 0.55, 0.64, 0.55, 0.60]),  # ties on both sides
    ([3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]),
    (list(np.random.default_rng(3).normal(size=30)), list(np.random.default_rng(4).normal(size=30))),
]


@pytest.mark.parametrize("x, y", CASES)
def test_tau_and_rho_agree_with_scipy(x, y):
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_undefined_cases_are_nan():
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman_rho([2, 2], [1, 2]))
    assert math.isnan(kendall_tau([1], [1]))
    with pytest.raises(ValueError, match="3 values but y has 2"):
        kendall_tau([1, 2, 3], [1, 2])


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    x, y = CASES[4]
    a = bootstrap_interval(kendall_tau, x, y, n_boot=500, seed=7)
    b = bootstrap_interval(kendall_tau, x, y, n_boot=500, seed=7)
    c = bootstrap_interval(kendall_tau, x, y, n_boot=500, seed=8)
    assert a == b and a != c
    lo, hi = bootstrap_interval(kendall_tau, CASES[3][0], CASES[3][1], n_boot=500)
    assert lo <= kendall_tau(*CASES[3]) <= hi
