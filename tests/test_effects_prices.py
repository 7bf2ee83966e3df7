"""Latency prices come from the run's latency source, never from a regression, and are never negative for a
block added (analysis.effects.prices): a planted table, a planted contradiction, networks timed here."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analysis.effects import cli as effects
from analysis.effects.answer import load_effects, placement_of
from analysis.effects.prices import CACHE, Price, _assemble, measured_prices
from runtime.prices import timed_prices
from analysis.effects.model import EffectsError
from runtime.latency_table import LatencyTable, predict_latency
from space import ArchConfig
from space.blocks import block_keys
from tests.effects_runs import write_qmc_run


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return write_qmc_run(tmp_path_factory.mktemp("prices") / "qmc", n_sampled=60)


def _table(run: Path) -> LatencyTable:
    return LatencyTable.load(json.loads((run / "run.json").read_text())["latency_table"]["path"])


def test_a_table_run_prices_each_choice_by_the_blocks_that_differ(planted):
    e = load_effects(planted)
    table, base = _table(planted), e.prices.base
    assert "the run's latency table" in e.prices.source and e.prices.base_ms == pytest.approx(
        predict_latency(base, table))
    mca = e.table[e.table["factor"] == "mca"]
    for _, r in mca.iterrows():
        i = int(r["level"])
        on = ArchConfig(**{**base.to_dict(), "mca": [j == i for j in range(16)]})
        assert r["latency_ms"] == pytest.approx(predict_latency(on, table) - predict_latency(base, table))
        assert 0 < r["latency_low"] < r["latency_ms"] < r["latency_high"]
    ratio = e.table[e.table["factor"] == "ratio"].iloc[0]
    other = ArchConfig(**{**base.to_dict(), "ratio": int(ratio["level"])})
    assert ratio["latency_ms"] == pytest.approx(predict_latency(other, table) - predict_latency(base, table))
    # The planted run's own latencies are the table's predictions (tests/effects_runs.py sums them per block).
    from record.arch import from_flat

    for row in e.data.trials.head(8).to_dict("records"):
        assert row["latency_ms"] == pytest.approx(predict_latency(from_flat(row), table), abs=1e-4)
    # The placement's latency is the table's prediction of the placed network, exactly.
    p = placement_of(e, None, 3.5)
    assert p.latency_ms == pytest.approx(predict_latency(p.arch, table)) and p.latency_ms <= 3.5


def _plant(run: Path, tmp_path: Path, index: int, delta: float) -> Path:
    """A copy of `run` whose table makes MCA on bottleneck `index` (at the reference) cost `delta` ms."""
    import shutil

    copy = tmp_path / f"run-{index}-{delta}"
    shutil.copytree(run, copy)
    table = _table(run)
    base = load_effects(run).prices.base
    on = ArchConfig(**{**base.to_dict(), "mca": [j == index for j in range(16)]})
    off_key, on_key = block_keys(base)[index + 1], block_keys(on)[index + 1]
    ms = table.entries[off_key]["median_ms"] + delta
    table.entries[on_key].update(median_ms=ms, ci_low_ms=ms - 0.002, ci_high_ms=ms + 0.002)
    table.save(copy / "table.json")
    meta = json.loads((copy / "run.json").read_text())
    meta["latency_table"]["path"] = str(copy / "table.json")
    (copy / "run.json").write_text(json.dumps(meta))
    return copy


def test_a_block_priced_below_zero_is_refused_in_one_line(planted, tmp_path, capsys):
    broken = _plant(planted, tmp_path, 3, -0.05)  # the block "saves" 0.05 ms, its interval wholly below 0
    assert effects.run_main(effects.main, [str(broken)], prog=effects.PROG) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "MCA on bottleneck 3" in err and "cannot make a network faster" in err
    # Within the source's noise, a difference below zero is reported as 0 up to its upper bound.
    noisy = _plant(planted, tmp_path, 3, -0.001)
    r = load_effects(noisy).table.query("factor == 'mca' and level == '3'").iloc[0]
    assert r["latency_ms"] == 0.0 and r["latency_low"] == 0.0 and r["latency_high"] > 0


def test_no_price_without_a_runtime_and_no_regression(planted, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(planted, bare)
    meta = json.loads((bare / "run.json").read_text())
    meta.update(latency_table=None, latency_backend=None, latency_source="synthetic")
    (bare / "run.json").write_text(json.dumps(meta))
    e = load_effects(bare)
    assert e.prices is None and e.table["latency_ms"].isna().all()
    with pytest.raises(Exception, match="latency source cannot give"):
        placement_of(e, None, 4.0)


def test_assembled_prices_for_a_block_are_never_negative():
    base = ArchConfig(mca=(False,) * 16)
    prices = {f"mca={i}": Price(-0.01 * (i % 3), -0.05, 0.04) for i in range(16)}
    assembled = _assemble("x", base, 2.0, prices)
    assert all(p.ms >= 0 and p.low >= 0 and p.high > 0 for p in assembled.mca)
    with pytest.raises(EffectsError, match="MCA on bottleneck 5"):
        _assemble("x", base, 2.0, {**prices, "mca=5": Price(-0.2, -0.3, -0.1)})


def test_a_measured_run_times_the_pairs_here_once_and_caches_them(tmp_path):
    """PyTorch eager keeps this quick; the run's ONNX Runtime is timed the same way (runtime.backends.runner)."""
    base = ArchConfig(mca=(False,) * 16, width=0.25)
    said = []
    first = measured_prices(tmp_path, base, ["5-7-11"], ["3"], "torch", say=said.append, rounds=3)
    assert len(said) == 1 and "timing 16 MCA blocks on their own and 2 pairs" in said[0] and (tmp_path / CACHE).is_file()
    assert all(p.ms >= 0 and p.low >= 0 and np.isfinite(p.high) for p in first.mca)
    assert set(first.kernels) == {"5-7-11"} and set(first.ratio) == {"3"} and first.base_ms > 0
    again = measured_prices(tmp_path, base, ["5-7-11"], ["3"], "torch", say=said.append, rounds=3)
    assert len(said) == 1 and again.mca == first.mca, "read from the cache, not timed again"
    # Another base is another question: timed anew.
    prices, base_ms, where = timed_prices(ArchConfig(mca=(False,) * 16, width=0.25, ratio=3), [], [], "torch",
                                          rounds=2)
    assert len(prices) == 16 and all(p.low > 0 for p in prices.values()) and base_ms > 0 and "torch" in where
