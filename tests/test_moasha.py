"""MOASHA's decisions against a brute-force non-dominated ranking (property-based), and its rung rules."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.moasha import Rungs, crowding, default_rungs, fronts, rank_order, survivors

DIRS = ["maximize", "minimize", "minimize"]  # (accuracy at the rung, macs, latency)


def brute_fronts(points, directions):
    """Peel fronts by definition: a point is in the current front if no remaining point is at least
    as good everywhere and strictly better somewhere."""
    def better_or_equal(a, b):
        return all((x >= y) if d == "maximize" else (x <= y) for x, y, d in zip(a, b, directions))

    def dominated(i, pool):
        return any(better_or_equal(points[j], points[i]) and points[j] != points[i] for j in pool if j != i)

    left, out = list(range(len(points))), []
    while left:
        front = [i for i in left if not dominated(i, left)]
        out.append(front)
        left = [i for i in left if i not in front]
    return out


def brute_crowding(points, members):
    if len(members) <= 2:
        return {i: math.inf for i in members}
    dist = dict.fromkeys(members, 0.0)
    for k in range(len(points[members[0]])):
        order = sorted(members, key=lambda i: (points[i][k], i))
        span = points[order[-1]][k] - points[order[0]][k]
        for pos, i in enumerate(order):
            if pos in (0, len(order) - 1):
                dist[i] = math.inf
            elif span > 0:
                dist[i] += (points[order[pos + 1]][k] - points[order[pos - 1]][k]) / span
    return dist


def brute_goes_on(points, directions, index, eta):
    """The decision for point `index` among `points`, computed the slow way."""
    ranked = []
    for front in brute_fronts(points, directions):
        dist = brute_crowding(points, front)
        ranked += sorted(front, key=lambda i: (-dist[i], i))
    keep = max(1, math.ceil(len(points) / eta - 1e-9))
    return ranked.index(index) < keep


# Small integer grids make ties and duplicate points common, where ranking code goes wrong.
point = st.tuples(st.integers(0, 6).map(lambda v: v / 6), st.integers(1, 5), st.integers(1, 4)).map(
    lambda t: tuple(float(v) for v in t))


@settings(max_examples=300, deadline=None)
@given(st.lists(point, min_size=1, max_size=25), st.sampled_from([2.0, 3.0, 4.0]))
def test_decisions_equal_brute_force_ranking(points, eta):
    """Feeding recorded curves to the scheduler one by one (ASHA: each judged against those before it)
    gives exactly the brute-force decision for every arrival."""
    rungs = Rungs((1,), eta, DIRS)
    for i, p in enumerate(points):
        expected = brute_goes_on(points[: i + 1], DIRS, i, eta)
        assert rungs.decide(1, ("arch", i), p) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(point, min_size=1, max_size=30))
def test_fronts_and_crowding_equal_brute_force(points):
    fast = fronts(points, DIRS)
    assert [sorted(f) for f in fast] == [sorted(f) for f in brute_fronts(points, DIRS)]
    for members in fast:
        assert crowding(points, members) == brute_crowding(points, members)
    assert sorted(rank_order(points, DIRS)) == list(range(len(points)))


def test_cheap_net_with_middling_accuracy_survives_where_a_costly_one_does_not():
    """The point of a multi-objective rung: cost is part of the ranking."""
    rungs = Rungs((1,), 2.0, ["maximize", "minimize"])
    assert rungs.decide(1, "strong", (0.50, 100.0))
    assert not rungs.decide(1, "costly-weak", (0.30, 200.0))  # dominated by "strong"; top 1 of 2 goes on
    assert rungs.decide(1, "cheap", (0.30, 10.0))  # as weak, but cheap: on the front, top 2 of 3


def test_survivors_and_default_rungs():
    assert [survivors(n, 3) for n in (1, 2, 3, 4, 6, 7)] == [1, 1, 1, 2, 2, 3]
    assert default_rungs(4, 3) == (1, 3)
    assert default_rungs(9, 3) == (1, 3)
    assert default_rungs(10, 3) == (1, 3, 9)
    assert default_rungs(8, 2) == (1, 2, 4)
    with pytest.raises(ValueError):
        Rungs((1,), 1.0, DIRS)
    with pytest.raises(ValueError):
        Rungs((0, 2), 3.0, DIRS)


def test_rungs_rebuilt_from_the_run_tables():
    """Resume: the records come back from trials.csv + curves.csv; unfinished trainings are left out."""
    trials = [{"key": "a", "seed": "0", "status": "ok", "val_acc": "0.5", "macs": "10"},
              {"key": "b", "seed": "0", "status": "stopped", "val_acc": "0.2", "macs": "30"}]
    curves = [{"key": "a", "seed": "0", "epoch": "1", "val_acc": "0.3"},
              {"key": "a", "seed": "0", "epoch": "3", "val_acc": "0.5"},
              {"key": "b", "seed": "0", "epoch": "1", "val_acc": "0.2"},
              {"key": "c", "seed": "0", "epoch": "1", "val_acc": "0.9"}]  # cut off by a kill: no trials row
    rungs = Rungs.from_run((1, 3), 3.0, ["val_acc", "macs"], ["maximize", "minimize"], trials, curves)
    assert rungs.records[1] == {("a", 0): (0.3, 10.0), ("b", 0): (0.2, 30.0)}
    assert rungs.records[3] == {("a", 0): (0.5, 10.0)}
