"""Pareto front and hypervolume against brute force on random point sets (hypothesis)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.pareto import REFERENCE, fixed_box, hypervolume, hypervolume_history, hypervolume_min, pareto_front

NAMES = ["val_acc", "macs", "latency_ms", "params"]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw, max_points: int = 8, max_dims: int = 3, integers: bool = True):
    """(DataFrame, objectives, directions): small coordinates so ties and duplicates are common."""
    d = draw(st.integers(1, max_dims))
    n = draw(st.integers(0, max_points))
    value = st.integers(0, 4) if integers else st.floats(0, 1, allow_nan=False, width=32)
    pts = draw(st.lists(st.tuples(*[value] * d), min_size=n, max_size=n))
    if pts and draw(st.booleans()):  # an exact duplicate
        pts.append(pts[draw(st.integers(0, len(pts) - 1))])
    objectives = NAMES[:d]
    directions = draw(st.lists(st.sampled_from(["minimize", "maximize"]), min_size=d, max_size=d))
    df = pd.DataFrame([[float(v) for v in p] for p in pts], columns=objectives, dtype=float)
    df.insert(0, "number", range(len(df)))
    return df, objectives, directions


def _better_eq(a: float, b: float, direction: str) -> bool:
    return a <= b if direction == "minimize" else a >= b


def brute_front(points: list[tuple], directions: list[str]) -> set[int]:
    """Indices no other point dominates, straight from the definition."""
    keep = set()
    for i, p in enumerate(points):
        dominated = any(
            all(_better_eq(q[k], p[k], d) for k, d in enumerate(directions)) and q != p
            for j, q in enumerate(points) if j != i
        )
        if not dominated:
            keep.add(i)
    return keep


def inclusion_exclusion(points: list[list[float]], ref: list[float]) -> float:
    """Volume of the union of boxes [p, ref] (minimisation) by inclusion–exclusion."""
    total = 0.0
    for r in range(1, len(points) + 1):
        for subset in itertools.combinations(points, r):
            corner = [max(p[k] for p in subset) for k in range(len(ref))]
            vol = math.prod(max(0.0, ref[k] - corner[k]) for k in range(len(ref)))
            total += (-1) ** (r + 1) * vol
    return total


def grid_count(points: list[tuple], ref: list[int]) -> int:
    """Unit cells (minimisation, integer coordinates) covered by some box [p, ref]."""
    if not points:
        return 0
    lows = [min(p[k] for p in points) for k in range(len(ref))]
    count = 0
    for cell in itertools.product(*[range(lo, r) for lo, r in zip(lows, ref)]):
        if any(all(p[k] <= cell[k] for k in range(len(ref))) for p in points):
            count += 1
    return count


def to_min(row, directions):
    return [v if d == "minimize" else -v for v, d in zip(row, directions)]


@SETTINGS
@given(problems())
def test_pareto_front_matches_brute_force(problem):
    df, objectives, directions = problem
    points = [tuple(r) for r in df[objectives].itertuples(index=False)]
    front = pareto_front(df, objectives, directions)
    assert set(front["number"]) == brute_front(points, directions)
    # identical points: all or none of them are on the front
    for _, group in df.groupby(objectives):
        assert len(set(group["number"]) & set(front["number"])) in (0, len(group))


@SETTINGS
@given(problems(), st.integers(0, 9), st.data())
def test_rows_with_nan_are_left_out(problem, where, data):
    """A row missing any objective is left out wherever it sits, and the rest of the front stays, in order."""
    df, objectives, directions = problem
    missing = data.draw(st.lists(st.booleans(), min_size=len(objectives), max_size=len(objectives)).filter(any))
    # Its known values are the best there are: compared on them, it would dominate every other row.
    best = [-1.0 if d == "minimize" else 5.0 for d in directions]
    nan_row = pd.DataFrame([[len(df)] + [math.nan if m else b for m, b in zip(missing, best)]],
                           columns=["number", *objectives])
    at = min(where, len(df))
    df2 = pd.concat([df.iloc[:at], nan_row, df.iloc[at:]], ignore_index=True)
    assert list(pareto_front(df2, objectives, directions)["number"]) == list(pareto_front(df, objectives, directions)["number"])


@SETTINGS
@given(problems())
def test_hypervolume_with_reference_matches_grid_count(problem):
    df, objectives, directions = problem
    ref_raw = [6 if d == "minimize" else -2 for d in directions]
    hv = hypervolume(df, objectives, directions, reference=ref_raw)
    pts = [tuple(int(v) for v in to_min(r, directions)) for r in df[objectives].itertuples(index=False)]
    assert hv == pytest.approx(grid_count(pts, to_min(ref_raw, directions)), abs=1e-9)


@SETTINGS
@given(problems(integers=False))
def test_normalised_hypervolume_matches_inclusion_exclusion(problem):
    df, objectives, directions = problem
    hv = hypervolume(df, objectives, directions)
    rows = [list(r) for r in df[objectives].itertuples(index=False)]
    norm = []
    for r in rows:
        p = []
        for k, (v, d) in enumerate(zip(r, directions)):
            lo, hi = min(x[k] for x in rows), max(x[k] for x in rows)
            span = hi - lo if hi > lo else 1.0
            p.append((v - lo) / span if d == "minimize" else (hi - v) / span)
        norm.append(p)
    expected = inclusion_exclusion(norm, [REFERENCE] * len(objectives)) if norm else 0.0
    assert hv == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert 0.0 <= hv <= REFERENCE ** len(objectives) + 1e-12


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(*[st.floats(0, 1, allow_nan=False, width=32)] * 4), min_size=0, max_size=7))
def test_four_objectives_match_inclusion_exclusion(points):
    ref = [1.0] * 4
    assert hypervolume_min(np.array(points).reshape(-1, 4), ref) == pytest.approx(
        inclusion_exclusion([list(p) for p in points], ref), rel=1e-9, abs=1e-12)


@SETTINGS
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=10), st.sampled_from(["minimize", "maximize"]))
def test_one_objective(values, direction):
    df = pd.DataFrame({"number": range(len(values)), "val_acc": values})
    front = pareto_front(df, ["val_acc"], [direction])
    best = min(values) if direction == "minimize" else max(values)
    assert set(front["number"]) == {i for i, v in enumerate(values) if v == best}
    ref = 2.0 if direction == "minimize" else -1.0
    assert hypervolume(df, ["val_acc"], [direction], reference=[ref]) == pytest.approx(abs(ref - best))
    lo, hi = min(values), max(values)
    # normalised: the best value maps to 0, so the volume is the whole reference distance
    assert hypervolume(df, ["val_acc"], [direction]) == pytest.approx(REFERENCE)
    assert hypervolume(df, ["val_acc"], [direction], bounds={"val_acc": (lo - 1, hi + 1)}) == pytest.approx(
        REFERENCE - ((best - lo + 1) if direction == "minimize" else (hi + 1 - best)) / (hi - lo + 2))


@SETTINGS
@given(problems(max_points=10, integers=False), st.lists(st.sampled_from(["ok", "ok", "failed", "infeasible"]), min_size=11, max_size=11))
def test_hypervolume_history_is_monotone_and_ends_at_the_total(problem, statuses):
    df, objectives, directions = problem
    df = df.assign(status=statuses[: len(df)])
    hist = hypervolume_history(df, objectives, directions)
    assert len(hist) == len(df)
    assert list(hist["number"]) == list(df["number"])
    assert (np.diff(hist["hypervolume"].to_numpy()) >= -1e-12).all()
    ok = df[df["status"] == "ok"]
    assert list(hist["completed"]) == list(np.cumsum(df["status"] == "ok"))
    final = hist["hypervolume"].iloc[-1] if len(hist) else 0.0
    assert final == pytest.approx(hypervolume(ok, objectives, directions) if len(ok) else 0.0, rel=1e-9, abs=1e-12)


def test_unknown_objective_lists_the_allowed_ones():
    df = pd.DataFrame({"val_acc": [0.5], "macs": [1]})
    with pytest.raises(ValueError, match="choose from val_acc, macs, params, latency_ms"):
        pareto_front(df, ["accuracy"])
    with pytest.raises(ValueError, match="unknown direction"):
        pareto_front(df, ["val_acc"], ["up"])


def test_default_directions_come_from_the_search_objectives():
    df = pd.DataFrame({"number": [0, 1, 2], "val_acc": [0.5, 0.6, 0.4], "macs": [10, 20, 5]})
    assert list(pareto_front(df, ["val_acc", "macs"])["number"]) == [0, 1, 2]
    df.loc[2, "val_acc"] = 0.5
    df.loc[2, "macs"] = 12  # now dominated by trial 0
    assert list(pareto_front(df, ["val_acc", "macs"])["number"]) == [0, 1]


def test_the_fixed_box_history_by_hand_with_a_failure_a_point_past_the_box_and_a_second_seed():
    """Box val_acc 1 → 0.1 and macs 0 → 100: each point's share of the box worked out by hand."""
    trials = pd.DataFrame({
        "number": [4, 0, 1, 2, 3],  # out of order: the curve follows `number`
        "key": ["a", "a", "b", "c", "d"],
        "status": ["ok", "ok", "failed", "ok", "ok"],
        "val_acc": [0.73, 0.55, 0.9, 0.82, 0.05],
        "macs": [50.0, 50.0, 1.0, 80.0, 10.0],
    })
    box = {"val_acc": (1.0, 0.1), "macs": (0.0, 100.0)}
    hist = hypervolume_history(trials, ["val_acc", "macs"], box=box)
    assert hist["number"].tolist() == [0, 1, 2, 3, 4]
    assert hist["status"].tolist() == ["ok", "failed", "ok", "ok", "ok"]
    assert hist["completed"].tolist() == [1, 1, 2, 3, 4]
    # a at (0.5, 0.5) → 0.25; the failure adds nothing; c at (0.2, 0.8) adds 0.3 x 0.2; d is past chance
    # accuracy (beyond the box) and adds nothing; a's second seed moves its mean to 0.64 → (0.4, 0.5).
    assert hist["hypervolume"].tolist() == pytest.approx([0.25, 0.25, 0.31, 0.31, 0.34])
    without_key = hypervolume_history(trials.drop(columns="key"), ["val_acc", "macs"], box=box)
    assert without_key["hypervolume"].iloc[-1] == pytest.approx(0.37), "each row its own point: a's best seed counts"


def test_a_dominated_point_leaves_the_running_front_as_it_was():
    trials = pd.DataFrame({"number": [0, 1, 2], "status": "ok", "key": ["a", "b", "c"],
                           "val_acc": [0.55, 0.46, 0.55], "macs": [50.0, 60.0, 50.0]})
    hist = hypervolume_history(trials, ["val_acc", "macs"], box={"val_acc": (1.0, 0.1), "macs": (0.0, 100.0)})
    assert hist["hypervolume"].tolist() == pytest.approx([0.25, 0.25, 0.25])


def test_the_fixed_box_comes_from_chance_and_the_costliest_ok_baseline():
    archs = pd.DataFrame({"status": ["ok", "ok", "failed", "ok"], "preset": ["ghostnet", "all_mca", "cnn", ""],
                          "val_acc": [0.5, 0.6, None, 0.7], "macs": [10.0, 30.0, 99.0, 70.0],
                          "latency_ms": [None, None, None, 2.0]})
    box, origin = fixed_box(archs, ["val_acc", "macs", "latency_ms"])
    assert box["val_acc"] == (1.0, 0.1) and origin["val_acc"] == "chance accuracy"
    assert box["macs"] == (0.0, 60.0) and origin["macs"] == "2 x the costliest baseline", \
        "the failed preset (99) and the searched architecture (70) do not set the box"
    assert box["latency_ms"] == (0.0, 4.0) and origin["latency_ms"].startswith("2 x this run's costliest trial")
    empty, _ = fixed_box(archs[archs["status"] == "nothing"], ["macs"])
    assert empty["macs"] == (0.0, 1.0)


@pytest.mark.parametrize("call, message", [
    (lambda df: hypervolume(df, ["val_acc", "macs"], reference=[0.1]), "reference has 1 values for 2 objectives"),
    (lambda df: hypervolume(df, ["val_acc", "speed"]), "speed"),
])
def test_hypervolume_refuses_what_it_cannot_compute(call, message):
    df = pd.DataFrame({"val_acc": [0.5], "macs": [1.0]})
    with pytest.raises(ValueError, match=message):
        call(df)


def test_hypervolume_of_no_finite_rows_is_zero_and_bounds_scale_it():
    df = pd.DataFrame({"val_acc": [float("nan"), 0.5], "macs": [1.0, float("inf")]})
    assert hypervolume(df, ["val_acc", "macs"]) == 0.0
    one = pd.DataFrame({"val_acc": [0.5], "macs": [10.0]})
    # Normalised over bounds val_acc 0..1, macs 0..20: the point sits at (0.5, 0.5) of the unit box.
    assert hypervolume(one, ["val_acc", "macs"], bounds={"val_acc": (0.0, 1.0), "macs": (0.0, 20.0)}) == \
        pytest.approx((REFERENCE - 0.5) ** 2)


def test_a_history_of_bare_points_numbers_them_in_order_and_counts_each_as_ok():
    """Points without number, status or key columns: one point per row, in row order, every one usable."""
    points = pd.DataFrame({"val_acc": [0.55, 0.82, 0.46], "macs": [50.0, 80.0, 60.0]})
    hist = hypervolume_history(points, ["val_acc", "macs"], box={"val_acc": (1.0, 0.1), "macs": (0.0, 100.0)})
    assert hist["number"].tolist() == [0, 1, 2] and hist["status"].tolist() == ["ok"] * 3
    assert hist["completed"].tolist() == [1, 2, 3]
    assert hist["hypervolume"].tolist() == pytest.approx([0.25, 0.31, 0.31])
