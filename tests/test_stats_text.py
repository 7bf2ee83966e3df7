"""record.stats' words and small formulas, exactly: the noise line every summary and report prints, an estimate
shown with its error, and the binomial variance at its edges (the mutation run's record/stats.py survivors)."""
from __future__ import annotations

import math

import pytest

from record.stats import Estimate, binomial_var, describe_noise


def test_describe_noise_says_the_seed_noise_and_the_validation_term():
    assert describe_noise(0.0123456, 3, 1000, 0.6) == (
        "seed noise 0.0123 SD (pooled over 3 architectures with ≥ 2 seeds); "
        "validation 1,000 images (binomial SE 0.0155 at val_acc 0.60)")
    assert describe_noise(0.02, 1, 200) == (
        "seed noise 0.0200 SD (pooled over 1 architecture with ≥ 2 seeds); "
        "validation 200 images (binomial SE 0.0354 at val_acc 0.50)")


def test_describe_noise_says_what_it_does_not_know():
    assert describe_noise(None, 0, None) == (
        "seed noise not measured (no architecture has 2 ok seeds; see --baseline-seeds); "
        "validation size not recorded (binomial term left out)")
    assert describe_noise(None, 0, 0, 0.7).endswith("; validation size not recorded (binomial term left out)")


@pytest.mark.parametrize("p, n_val, var", [(0.6, 1000, 0.00024), (0.5, 100, 0.0025), (1.3, 100, 0.0),
                                           (-0.2, 100, 0.0), (0.5, None, None), (0.5, 0, None),
                                           (0.5, -5, None), (math.nan, 100, None)])
def test_binomial_var(p, n_val, var):
    got = binomial_var(p, n_val)
    assert got == var if var is None else got == pytest.approx(var)


def test_an_estimate_shows_its_error_or_a_question_mark():
    assert Estimate(0.452, 0.021, 3).show() == "0.4520 ± 0.0210"
    assert Estimate(0.452, 0.021, 3).show(".2f") == "0.45 ± 0.02"
    assert Estimate(0.452, math.nan, 1).show() == "0.4520 ± ?"
