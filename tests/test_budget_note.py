"""The search's CPU start-up line quotes the proxy-fidelity benchmark: recompute it from the committed CSV."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from trainer.budget import CPU_FIDELITY

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
    assert result["archs"] >= 12, "the calibration covers at least 12 architectures"
    assert len(bench.BUDGETS) >= 4  # >= 3 proxies and the reference
    longest = max(e * n for name, (e, n) in bench.BUDGETS.items() if name != "ref")
    ref_epochs, ref_images = bench.BUDGETS["ref"]
    assert ref_epochs * ref_images >= 4 * longest, "the reference is at least 4x the longest proxy"
    best = result["recommended"] or result["best"]
    assert CPU_FIDELITY.budget == best["budget"]
    assert (CPU_FIDELITY.epochs, CPU_FIDELITY.images) == bench.BUDGETS[best["budget"]]
    assert CPU_FIDELITY.archs == result["archs"]
    for field in ("tau", "lo", "hi"):
        assert getattr(CPU_FIDELITY, field) == pytest.approx(best[field], abs=0.005), field
    assert CPU_FIDELITY.seconds == pytest.approx(best["seconds"], abs=0.5)
    assert (result["recommended"] is None) == (CPU_FIDELITY.tau < CPU_FIDELITY.target)
    assert f"tau={CPU_FIDELITY.tau:.2f} [{CPU_FIDELITY.lo:.2f}, {CPU_FIDELITY.hi:.2f}]" in CPU_FIDELITY.line() and lines[-1].startswith("recommended budget:")
