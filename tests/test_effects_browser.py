"""The report's "Which bottlenecks deserve MCA" section in a real headless Chromium (issue #29)."""
from __future__ import annotations

from pathlib import Path

import pytest

from analysis.report import write_report
from test_report_browser import ARTIFACTS, open_report
from tests.effects_runs import write_qmc_run


@pytest.fixture(scope="module")
def effects_report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("effects-report")
    run = write_qmc_run(root / "qmc", n_sampled=40)
    return write_report([run], root / "report.html")


def test_forest_plot_has_16_bottlenecks_with_error_bars_beside_their_cost(browser, effects_report):
    page, errors, blocked = open_report(browser, effects_report)
    try:
        assert not errors and not blocked, errors + blocked
        order = page.evaluate("() => [...document.querySelectorAll('section > h2')].map(h => h.textContent)")
        assert order[0].startswith("Which bottlenecks deserve MCA") or order[1].startswith("Which bottlenecks")
        forest = page.evaluate("""() => { const d = document.getElementById('fig-effects-forest');
            return {traces: d.data.map(t => ({type: t.type, n: t.x.length, bars: t.error_x ? t.error_x.array.length : 0,
                                              xaxis: t.xaxis || 'x'})),
                    axes: Object.keys(d._fullLayout).filter(k => k.startsWith('xaxis'))
                              .map(k => d._fullLayout[k].title.text),
                    points: d.querySelectorAll('.subplot.xy .scatterlayer .point').length,
                    bars: d.querySelectorAll('.subplot.xy .errorbar').length}; }""")
        effect, macs = forest["traces"][0], forest["traces"][1]
        assert effect["n"] == 16 and effect["bars"] == 16, forest
        assert macs["type"] == "bar" and macs["n"] == 16, forest
        assert forest["points"] == 16 and forest["bars"] == 16, forest  # drawn in the effect panel
        assert "MACs (M)" in forest["axes"] and any(a.startswith("latency_ms") for a in forest["axes"]), forest
        other = page.evaluate("() => document.getElementById('fig-effects-other').data[0].y")
        assert any(y.startswith("kernels 5-7-11 vs 3-5-7") for y in other) and any(y.startswith("ratio 3 vs 2")
                                                                                    for y in other)
        for div, words in (("effects-resolving", "detects a bottleneck effect of"), ("effects-design", "inflation"),
                           ("effects-additivity", "Additivity")):
            assert words in page.inner_text(f"#{div}")
        assert page.locator("#fig-mca-heatmap").count() == 1  # the placement heatmap stays
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#effects").screenshot(path=str(ARTIFACTS / "effects-section.png"))
    finally:
        page.close()


def test_a_run_too_small_for_the_model_says_why(browser, tmp_path):
    run = write_qmc_run(tmp_path / "few", n_sampled=12, limit=16)
    page, errors, _ = open_report(browser, write_report([run], tmp_path / "few.html"))
    try:
        assert not errors
        assert "needs at least" in page.inner_text("#note-effects-empty")
    finally:
        page.close()
