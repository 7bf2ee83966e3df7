"""search.ledger.Ledger on hand-worked rows: which architectures are near the front, and what a summary shows.

Written for the mutants that survived the first mutation run (benchmarks/mutation.py): `near_front` decides
which architectures get more seeds (`--repeats`), and nothing called it directly.
"""
from __future__ import annotations

import math

import pytest

from search.ledger import Ledger

OBJECTIVES, DIRECTIONS = ["val_acc", "macs"], ["maximize", "minimize"]


def row(key: str, val_acc: float, macs: float, seed: int = 0, status: str = "ok") -> dict[str, str]:
    return {"status": status, "key": key, "val_acc": repr(val_acc), "macs": repr(macs), "seed": str(seed)}


ROWS = [row("A", 0.60, 100), row("B", 0.50, 200), row("C", 0.595, 100.5), row("F", 0.0, 0.0, status="failed")]


def test_near_front_is_the_front_and_what_one_standard_error_would_put_on_it():
    ledger = Ledger.from_rows(ROWS, OBJECTIVES, DIRECTIONS, n_val=1000)
    # C is dominated by A (less accurate, dearer) but by 0.005, a third of its binomial SE at 1000 images (0.0155).
    assert ledger.front == ["A"]
    assert [ledger.near_front(k) for k in "ABCF"] == [True, False, True, False]
    assert ledger.near_front("never-trained") is False


def test_near_front_without_a_known_error_raises_nothing():
    """Validation size unknown and one seed: the SE is NaN, so C is judged on its mean and stays dominated."""
    ledger = Ledger.from_rows(ROWS, OBJECTIVES, DIRECTIONS, n_val=None)
    assert math.isnan(ledger.estimate("C").se)
    assert [ledger.near_front(k) for k in "ABC"] == [True, False, False]


def test_near_front_without_an_accuracy_objective_is_the_front_itself():
    ledger = Ledger.from_rows([{"status": "ok", "key": k, "macs": repr(m), "params": repr(p), "seed": "0"}
                               for k, m, p in (("A", 100, 10), ("C", 100.5, 10.5))],
                              ["macs", "params"], ["minimize", "minimize"], n_val=1000)
    assert ledger.front == ["A"] and [ledger.near_front(k) for k in "AC"] == [True, False]


def test_from_rows_is_recording_each_row_in_order():
    rows = [*ROWS, row("A", 0.62, 100, seed=1)]
    built = Ledger.from_rows(rows, OBJECTIVES, DIRECTIONS, n_val=1000, run_seed=7)
    by_hand = Ledger(OBJECTIVES, DIRECTIONS, n_val=1000, run_seed=7)
    for r in rows:
        by_hand.record(r)
    assert built.front == by_hand.front == ["A"]
    assert built.rows == by_hand.rows and built.n_val == 1000 and built.run_seed == 7
    assert {k: built.values(k) for k in "ABCF"} == {k: by_hand.values(k) for k in "ABCF"}


def test_summary_row_holds_the_means_their_error_and_the_seed_count():
    ledger = Ledger.from_rows([*ROWS, row("A", 0.62, 100, seed=1)], OBJECTIVES, DIRECTIONS, n_val=1000)
    a = ledger.summary_row("A")
    assert a["key"] == "A" and a["seed"] == "0", "the first row's own fields"
    assert a["val_acc"] == pytest.approx(0.61) and a["macs"] == pytest.approx(100.0) and a["n_seeds"] == 2
    assert 0 < a["val_acc_se"] < 0.05
    failed = ledger.summary_row("F")
    assert math.isnan(failed["val_acc"]) and math.isnan(failed["val_acc_se"]) and failed["n_seeds"] == 0
    assert [r["key"] for r in ledger.front_rows()] == ["A"]


def test_a_second_seed_that_moves_a_mean_rebuilds_the_front_in_first_seen_order():
    ledger = Ledger.from_rows([row("A", 0.60, 100), row("D", 0.50, 90), row("E", 0.59, 100)],
                              OBJECTIVES, DIRECTIONS, n_val=1000)
    assert ledger.front == ["A", "D"], "E is dominated by A"
    ledger.record(row("A", 0.50, 100, seed=1))  # A's mean falls to 0.55: E now dominates it
    assert ledger.values("A") == [pytest.approx(0.55), 100.0]
    assert ledger.front == ["D", "E"]
    ledger.record(row("E", 0.30, 100, seed=1))  # E's mean falls to 0.445: A (0.55) is back, E is off
    assert ledger.front == ["A", "D"]
