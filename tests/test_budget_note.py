"""The search's CPU start-up line quotes the proxy-fidelity benchmark: recompute it from the committed CSV."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from trainer.budget import BUDGETS, CPU_FIDELITY

REPO = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("proxy_fidelity", REPO / "benchmarks" / "proxy_fidelity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_fidelity_line_matches_the_benchmark_data():
    bench = _benchmark()
    lines: list[str] = []
    result = bench.summarise(bench.read_rows(REPO / "benchmarks" / "data" / "proxy_fidelity.csv"), bench.BUDGETS,
                             out=lines.append)
    assert lines[-1].startswith("recommended budget:")
    best = result["recommended"] or result["best"]
    assert best is not None, "a measured budget fits the overnight search"
    assert CPU_FIDELITY.budget == best["budget"]
    assert (CPU_FIDELITY.epochs, CPU_FIDELITY.epoch_images, CPU_FIDELITY.width) == bench.BUDGETS[best["budget"]]
    assert CPU_FIDELITY.archs == best["n"]
    for field, measured in (("tau", "self_tau"), ("lo", "self_lo"), ("hi", "self_hi")):
        assert getattr(CPU_FIDELITY, field) == pytest.approx(best[measured], abs=0.005), field
    assert CPU_FIDELITY.seconds == pytest.approx(best["seconds"], abs=0.5)
    assert CPU_FIDELITY.seed_sd == pytest.approx(100 * best["seed_sd"], abs=0.005)
    assert CPU_FIDELITY.signal == pytest.approx(100 * best["signal"], abs=0.005)
    assert (result["recommended"] is None) == (CPU_FIDELITY.tau < CPU_FIDELITY.floor)
    assert f"tau={CPU_FIDELITY.tau:.2f} [{CPU_FIDELITY.lo:.2f}, {CPU_FIDELITY.hi:.2f}]" in CPU_FIDELITY.line()


def test_the_cpu_preset_is_the_calibrated_budget_and_fits_overnight():
    bench = _benchmark()
    cpu = BUDGETS["cpu"]
    assert (cpu.epochs, cpu.epoch_images, cpu.proxy_width) == bench.BUDGETS[CPU_FIDELITY.budget]
    assert cpu.train_size is None, "the calibration trained on the whole training split"
    hours = CPU_FIDELITY.hours(bench.SEARCH_TRIALS, bench.CORES, cpu)
    assert hours == pytest.approx(bench.search_hours(CPU_FIDELITY.seconds)) and hours <= bench.SEARCH_HOURS


def test_expected_duration_scales_with_the_images_trained():
    full = CPU_FIDELITY.hours(200, 2, BUDGETS["cpu"], 45_000)
    assert CPU_FIDELITY.hours(200, 2, BUDGETS["cpu"], 4_136) == pytest.approx(full * 4_136 / 45_000)
    assert CPU_FIDELITY.hours(100, 1, BUDGETS["cpu"], 45_000) == pytest.approx(full)
    assert CPU_FIDELITY.hours(200, 2, dataclasses.replace(BUDGETS["cpu"], proxy_width=0.3)) is None
    # search.confirm's CPU default: 3 x the proxy's epochs, 8 trainings 2 at a time
    three = dataclasses.replace(BUDGETS["cpu"], epochs=3)
    line = CPU_FIDELITY.duration_line(8, 2, three, 45_000)
    assert f"about {CPU_FIDELITY.hours(8, 2, three, 45_000):.1f} h for 8 trainings" in line
    assert "scaled to 3 x 45,000" in line and CPU_FIDELITY.hours(8, 2, three, 45_000) == pytest.approx(
        3 * CPU_FIDELITY.hours(8, 2, BUDGETS["cpu"], 45_000))
