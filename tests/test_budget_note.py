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


def test_the_start_up_quotes_the_calibration_only_for_the_budget_it_measured(monkeypatch):
    """smoke (or any override) gets one line saying its ranking was not measured and the command that measures
    it; the calibrated budget gets the figure; every line wraps at the terminal's width."""
    from cli_kit import wrap

    monkeypatch.setenv("COLUMNS", "72")
    own = dataclasses.replace(BUDGETS["cpu"], val_size=1_034)  # the validation split is not the recipe
    assert CPU_FIDELITY.covers(BUDGETS["cpu"]) and CPU_FIDELITY.covers(own)
    calibrated = CPU_FIDELITY.start_lines(own, 200, 2, 45_000, "runs/my run")
    assert calibrated[0].startswith("proxy fidelity on CPU") and "Kendall tau=0.08" in calibrated[0]
    assert "python -m search.fidelity 'runs/my run' --epochs 3 --sample 8" in calibrated[0]
    assert calibrated[1].startswith("expected duration: about ")
    for budget, which in ((BUDGETS["smoke"], "budget smoke"),
                          (dataclasses.replace(BUDGETS["cpu"], lr=0.05), "budget cpu with overrides"),
                          (dataclasses.replace(BUDGETS["cpu"], epochs=3), "budget cpu with overrides")):
        ranking, duration = CPU_FIDELITY.start_lines(budget, 40, 2, 4_136, "runs/x")
        assert not CPU_FIDELITY.covers(budget)
        assert ranking == (f"proxy ranking: not measured for {which} (only the cpu budget's is); measure it once "
                           f"the search ends: python -m search.fidelity runs/x --epochs {3 * budget.epochs} "
                           "--sample 8")
        assert "tau" not in ranking and duration.startswith("expected duration: ")
    text = wrap(calibrated[0])
    assert len(text.splitlines()) > 3 and max(map(len, text.splitlines())) <= 72
    assert all(line.startswith("  ") for line in text.splitlines()[1:])
    assert " ".join(text.split()) == " ".join(calibrated[0].split()), "wrapping only breaks lines"
