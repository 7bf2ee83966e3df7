"""Invariants, not examples (Hypothesis, bounded for the fast layer): the codecs that name an architecture,
the Pareto front's order and the hypervolume's growth, the effects model's invariances.

The Pareto front against brute force and the hypervolume against inclusion-exclusion are in
tests/test_pareto.py; the latency table's sum rule over drawn placements in tests/test_latency_table.py.
"""
from __future__ import annotations

import dataclasses
import json
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.effects.model import build_design, fit
from analysis.effects.sim import qmc_design, truth
from analysis.pareto import hypervolume, pareto_front
from record.arch import from_flat, to_flat
from space import ArchConfig
from space.config import BACKBONE_NAMES, MCA_POINTS
from tests.test_pareto import problems

BOUNDED = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def archs(draw) -> ArchConfig:
    """Any valid architecture of any backbone (kernels in any order, any width GhostNet allows)."""
    backbone = draw(st.sampled_from(BACKBONE_NAMES))
    n = MCA_POINTS[backbone]
    width = draw(st.floats(0.05, 4.0, allow_nan=False, allow_infinity=False)) if backbone == "ghostnet" else 1.0
    return ArchConfig(mca=tuple(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
                      kernels=tuple(draw(st.lists(st.sampled_from(range(3, 32, 2)), min_size=1, max_size=4,
                                                  unique=True))),
                      ratio=draw(st.integers(1, 8)), width=width, dw_size=draw(st.sampled_from([1, 3, 5, 7])),
                      backbone=backbone)


def same_network(a: ArchConfig, b: ArchConfig) -> bool:
    """Identical built models: every field equal, the kernels only where some MCA uses them."""
    fields = ("mca", "ratio", "width", "dw_size", "backbone")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and (a.kernels == b.kernels or not any(a.mca))


@BOUNDED
@given(archs())
def test_an_architecture_survives_json_dict_and_table_cells(arch):
    assert ArchConfig.from_json(arch.to_json()) == arch
    assert ArchConfig.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch
    flat = to_flat(arch)
    assert from_flat(flat) == arch
    assert from_flat({k: str(v) for k, v in flat.items()}) == arch  # as trials.csv hands the cells back
    assert from_flat(pd.Series(flat)) == arch  # as a DataFrame row does
    assert ArchConfig.from_json(arch.to_json()).key == arch.key


@BOUNDED
@given(archs(), archs())
def test_equal_keys_mean_the_same_network(a, b):
    assert (a.key == b.key) == same_network(a, b)
    shuffled = ArchConfig(mca=a.mca, kernels=tuple(reversed(a.kernels)), ratio=a.ratio, width=a.width,
                          dw_size=a.dw_size, backbone=a.backbone)
    assert shuffled == a and shuffled.key == a.key  # the kernel set is a set
    bare = dataclasses.replace(a, mca=(False,) * len(a.mca))
    other_kernels = dataclasses.replace(bare, kernels=(3,) if bare.kernels != (3,) else (5,))
    assert bare.key == other_kernels.key and same_network(bare, other_kernels)  # no MCA: the kernels build nothing
    assert dataclasses.replace(a, ratio=a.ratio % 8 + 1).key != a.key


@BOUNDED
@given(problems(), st.randoms(use_true_random=False))
def test_the_front_does_not_depend_on_row_order(problem, rng):
    df, objectives, directions = problem
    order = list(range(len(df)))
    rng.shuffle(order)
    front = set(pareto_front(df, objectives, directions)["number"])
    assert set(pareto_front(df.iloc[order], objectives, directions)["number"]) == front


@BOUNDED
@given(problems(), st.lists(st.integers(0, 4), min_size=3, max_size=3))
def test_adding_a_point_never_lowers_the_hypervolume(problem, new):
    df, objectives, directions = problem
    ref = [6.0 if d == "minimize" else -2.0 for d in directions]
    row = pd.DataFrame([[len(df), *map(float, new[:len(objectives)])]], columns=["number", *objectives])
    before = hypervolume(df, objectives, directions, reference=ref) if len(df) else 0.0
    after = hypervolume(pd.concat([df, row], ignore_index=True), objectives, directions, reference=ref)
    assert after >= before - 1e-12


@lru_cache(maxsize=None)
def _qmc_rows() -> pd.DataFrame:
    return qmc_design(40, seed=0)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1), st.floats(-0.3, 0.3, allow_nan=False), st.randoms(use_true_random=False))
def test_effects_ignore_row_order_and_a_constant_added_to_every_accuracy(seed, shift, rng):
    rows = _qmc_rows()
    rows = rows.assign(val_acc=truth(rows) + np.random.default_rng(seed).normal(0.0, 0.02, len(rows)))
    design = build_design(rows)
    base = fit(design.X, design.y, design.groups)
    order = list(range(len(rows)))
    rng.shuffle(order)
    shuffled_design = build_design(rows.iloc[order].reset_index(drop=True))
    shuffled = fit(shuffled_design.X, shuffled_design.y, shuffled_design.groups)
    assert list(shuffled_design.X.columns) == list(design.X.columns)
    assert np.allclose(shuffled.params, base.params, atol=1e-10) and np.allclose(shuffled.bse, base.bse, atol=1e-10)
    moved = build_design(rows.assign(val_acc=rows["val_acc"] + shift))
    moved_fit = fit(moved.X, moved.y, moved.groups)
    effects = [c for c in design.X.columns if c != "const"]
    assert np.allclose(moved_fit.params[effects], base.params[effects], atol=1e-10)
    assert moved_fit.params["const"] == pytest.approx(base.params["const"] + shift, abs=1e-10)
    assert np.allclose(moved_fit.bse, base.bse, atol=1e-10)
