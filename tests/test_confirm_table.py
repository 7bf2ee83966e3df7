"""The study's table from confirm rows: Welch intervals, the most accurate systems for their cost, the sentence."""
from __future__ import annotations

import math
import random

import pandas as pd
import pytest
from scipy import stats

from analysis.confirm import answer, pareto_systems, summarise, table_cells, table_markdown, welch


def _welch_by_hand(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, float]:
    """Welch–Satterthwaite: the difference of means ± t(df) · sqrt(s_a²/n_a + s_b²/n_b)."""
    va, vb = pd.Series(a).var() / len(a), pd.Series(b).var() / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * math.sqrt(va + vb)
    delta = sum(a) / len(a) - sum(b) / len(b)
    return delta - half, delta + half


@pytest.mark.parametrize("seed", range(5))
def test_welch_interval_is_the_textbook_one(seed):
    rng = random.Random(seed)
    a = [rng.gauss(0.6, 0.01) for _ in range(rng.randint(2, 6))]
    b = [rng.gauss(0.59, 0.03) for _ in range(rng.randint(2, 6))]
    diff = welch(a, b)
    low, high = _welch_by_hand(a, b)
    assert diff.delta == pytest.approx(sum(a) / len(a) - sum(b) / len(b))
    assert (diff.low, diff.high) == pytest.approx((low, high))
    assert diff.significant == (low > 0 or high < 0)


def test_welch_needs_two_seeds_a_side_and_identical_seeds_have_no_width():
    assert welch([0.5], [0.4, 0.41]) is None and welch([0.5, 0.6], [0.4]) is None
    same = welch([0.5, 0.5], [0.4, 0.4])
    assert (same.low, same.delta, same.high) == pytest.approx((0.1, 0.1, 0.1)) and same.significant


def _rows(accs: dict[str, list[float]], macs: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"system": s, "key": s, "seed": i, "test_acc": a, "macs": macs[s], "params": 1e6,
                          "latency_ms": float("nan")} for s, seeds in accs.items() for i, a in enumerate(seeds)])


def test_most_accurate_for_their_cost_is_the_brute_force_front():
    rng = random.Random(3)
    for _ in range(20):
        names = [f"s{i}" for i in range(rng.randint(2, 7))]
        summary = summarise(_rows({n: [rng.random(), rng.random()] for n in names},
                                  {n: float(rng.randint(1, 4)) for n in names}), names[0])
        pts = {r["system"]: (r["mean"], r["macs"]) for _, r in summary.iterrows()}
        front = {s for s, (acc, cost) in pts.items()
                 if not any(a >= acc and c <= cost and (a > acc or c < cost) for a, c in pts.values())}
        assert set(pareto_systems(summary)) == front


def test_the_sentence_names_the_pick_first_and_every_system_against_the_reference():
    df = _rows({"ghostnet": [0.50, 0.51, 0.49], "chosen": [0.60, 0.61, 0.59], "cnn": [0.40, 0.41, 0.39],
                "all_mca": [0.50, 0.52, 0.49], "selective_mca": [0.55]},
               {"ghostnet": 14e6, "chosen": 15e6, "cnn": 21e6, "all_mca": 26e6, "selective_mca": 18e6})
    summary = summarise(df, "ghostnet")
    text = answer(summary, "ghostnet", "ghostnet")
    assert text.startswith("Most accurate for its cost (mean test accuracy against MACs): ghostnet, chosen;")
    assert text.index("chosen beats ghostnet") < text.index("cnn is below ghostnet") \
        < text.index("all_mca is within noise of ghostnet") \
        < text.index("selective_mca vs ghostnet: not enough seeds to tell")
    head, rows = table_cells(summary, "ghostnet", "measured")
    lines = table_markdown(summary, "ghostnet", "measured").splitlines()
    assert lines[0] == "| " + " | ".join(head) + " |" and len(lines) == 2 + len(rows) == 7
    by = {r[0]: r for r in rows}
    assert by["ghostnet"][5] == "reference" and by["selective_mca"][5] == "needs 2 seeds each"
    assert by["chosen"][6] == "yes" and by["all_mca"][6] == "no" and by["chosen"][4] == "60.00 ± 1.00 % (3)"
