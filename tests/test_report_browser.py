"""The report in a real headless Chromium, offline: no errors, every figure drawn with every point.

Every request that is not file:// is aborted and recorded; the report must
make none.  Chromium comes from the system (/usr/bin/chromium, Debian's
package in CI): the test never downloads a browser.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from analysis.load import MCA_COLUMNS, load_run
from analysis.pareto import pareto_front
from analysis.report import write_report
from runbuilder import build_run

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def synthetic_runs(tmp_path_factory) -> list[Path]:
    """Two runs with failures and different seeds (real archs and MACs, made-up accuracy)."""
    root = tmp_path_factory.mktemp("browser-runs")
    return [build_run(root / "synth-a", 4, seed=0, statuses=["ok"] * 6 + ["failed", "infeasible"]),
            build_run(root / "synth-b", 2, seed=0, baselines=False, name="synth-b")]


def open_report(browser, path: Path):
    """Load `path`, wait until every figure is drawn; return (page, errors, blocked requests)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    blocked: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("request", lambda r: None if r.url.startswith(("file:", "data:", "blob:")) else blocked.append(r.url))

    def route(r):
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(path.resolve().as_uri())
    page.wait_for_function(
        "() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d._fullLayout && d.querySelector('.main-svg'))",
        timeout=60_000)
    page.wait_for_timeout(300)
    return page, errors, blocked


def trace_lengths(page, fig_id: str) -> list[int]:
    return page.evaluate(
        """id => document.getElementById(id).data.map(t =>
              t.type === 'heatmap' ? t.z.length : t.type === 'parcoords' ? t.dimensions[0].values.length : t.x.length)""",
        fig_id)


def drawn_points(page, fig_id: str) -> int:
    return page.evaluate("id => document.getElementById(id).querySelectorAll('.scatterlayer .point').length", fig_id)


def expected_tradeoff(ok, cost: str) -> list[int]:
    pts = ok[ok["val_acc"].notna() & ok[cost].notna()]
    return [len(pts), len(pareto_front(pts, ["val_acc", cost])), int((pts["preset"] != "").sum())]


def check_run_figures(page, run_dir: Path) -> None:
    data = load_run(run_dir)
    ok = data.ok
    assert len(ok) > 0
    costs = ["macs"] + (["latency_ms"] if ok["latency_ms"].notna().any() else [])
    for cost in costs:
        fig_id = "fig-acc-macs" if cost == "macs" else "fig-acc-latency"
        expected = expected_tradeoff(ok, cost)
        assert trace_lengths(page, fig_id) == expected, fig_id
        assert drawn_points(page, fig_id) == sum(expected), fig_id
        labels = page.evaluate(f"() => [...document.querySelectorAll('#{fig_id} .scatterlayer .textpoint')].map(t => t.textContent)")
        assert sorted(labels) == sorted(ok.loc[ok["preset"] != "", "preset"]), fig_id
    if "latency_ms" not in costs:
        assert page.locator("#fig-acc-latency").count() == 0 and page.locator("#note-no-latency").count() == 1

    z = page.evaluate("() => document.getElementById('fig-mca-heatmap').data[0].z")
    assert len(z) == 2 and all(len(row) == len(MCA_COLUMNS) for row in z)
    assert z[0] == pytest.approx(list(ok[MCA_COLUMNS].astype(float).mean()))
    front = pareto_front(ok, data.objectives)
    assert z[1] == pytest.approx(list(front[MCA_COLUMNS].astype(float).mean()))
    assert page.locator("#fig-mca-heatmap .hm image").count() == 1  # the heatmap was painted

    assert trace_lengths(page, "fig-parallel") == [len(ok)]
    n_dims = page.evaluate("() => document.getElementById('fig-parallel').data[0].dimensions.length")
    assert page.locator("#fig-parallel .parcoords .axis-title").count() == n_dims

    assert trace_lengths(page, "fig-hypervolume") == [len(data.trials)]
    assert drawn_points(page, "fig-hypervolume") == len(data.trials)

    rows = page.locator("#front-table tbody tr")
    assert rows.count() == len(front)
    assert page.locator("#front-table tr.knee").count() == 1


def finish(page, errors, blocked, screenshot: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
    page.close()
    assert not blocked, f"the report tried to reach the network: {blocked}"
    assert not errors, errors


@pytest.mark.e2e
def test_smoke_run_report_in_chromium(browser, smoke_run, tmp_path):
    run_dir, _ = smoke_run
    out = write_report([run_dir], tmp_path / "report.html")
    page, errors, blocked = open_report(browser, out)
    check_run_figures(page, run_dir)
    finish(page, errors, blocked, "report.png")


def test_report_with_failures_in_chromium(browser, synthetic_runs, tmp_path):
    out = write_report([synthetic_runs[0]], tmp_path / "synthetic.html")
    page, errors, blocked = open_report(browser, out)
    check_run_figures(page, synthetic_runs[0])
    assert page.locator("#note-not-ok").count() == 1
    finish(page, errors, blocked, "report-synthetic.png")


def _check_compare(page, runs: list[Path]) -> None:
    datas = [load_run(r) for r in runs]
    fronts = [len(pareto_front(d.ok[d.ok["macs"].notna()], ["val_acc", "macs"])) for d in datas]
    assert trace_lengths(page, "fig-compare-front") == fronts
    assert drawn_points(page, "fig-compare-front") == sum(fronts)
    names = page.evaluate("() => document.getElementById('fig-compare-front').data.map(t => t.name)")
    assert all(d.name in n for d, n in zip(datas, names))
    assert trace_lengths(page, "fig-compare-hypervolume") == [len(d.trials) for d in datas]
    assert drawn_points(page, "fig-compare-hypervolume") == sum(len(d.trials) for d in datas)
    finals = page.evaluate("() => document.getElementById('fig-compare-hypervolume').data.map(t => t.y[t.y.length - 1])")
    assert all(0 < f <= 1.1 ** 2 for f in finals)


@pytest.mark.e2e
def test_compare_report_in_chromium(browser, smoke_run, synthetic_runs, tmp_path):
    run_dir, _ = smoke_run
    runs = [run_dir, synthetic_runs[0]]
    out = write_report(runs, tmp_path / "compare.html")
    page, errors, blocked = open_report(browser, out)
    check_run_figures(page, run_dir)
    _check_compare(page, runs)
    finish(page, errors, blocked, "report-compare.png")


def test_compare_synthetic_runs_in_chromium(browser, synthetic_runs, tmp_path):
    out = write_report(synthetic_runs, tmp_path / "compare-synthetic.html")
    page, errors, blocked = open_report(browser, out)
    _check_compare(page, synthetic_runs)
    finish(page, errors, blocked, "report-compare-synthetic.png")


def error_bar_traces(page, fig_id: str) -> int:
    """Traces of a figure that carry visible error bars (Plotly `error_y`)."""
    return page.evaluate("id => document.getElementById(id).data.filter(t => t.error_y && t.error_y.visible).length",
                         fig_id)


def drawn_error_bars(page, fig_id: str) -> int:
    return page.evaluate("id => document.getElementById(id).querySelectorAll('.errorbar path.yerror').length", fig_id)


def test_error_bars_in_chromium(browser, synthetic_runs, tmp_path):
    """A run with 3 seeds per architecture: ± 1 SE on every point of the accuracy-cost plots."""
    run = build_run(tmp_path / "seeded", 3, seeds=3, statuses=["ok"] * 5 + ["failed", "ok"])
    out = write_report([run, synthetic_runs[1]], tmp_path / "seeded.html")
    page, errors, blocked = open_report(browser, out)
    check_run_figures(page, run)
    ok = load_run(run).ok
    for fig_id, cost in (("fig-acc-macs", "macs"), ("fig-acc-latency", "latency_ms")):
        assert error_bar_traces(page, fig_id) == 2, fig_id  # all architectures, and the front
        pts, front, _ = expected_tradeoff(ok, cost)
        assert drawn_error_bars(page, fig_id) == pts + front, fig_id
        bars = page.evaluate(f"() => document.getElementById('{fig_id}').data[0].error_y.array")
        assert bars == pytest.approx(list(ok.sort_index()["val_acc_se"]))
    assert error_bar_traces(page, "fig-compare-front") == 2  # one front per run
    assert page.locator("#note-noise").count() == 1 and page.locator("#note-hv-reference").count() == 1
    finish(page, errors, blocked, "report-error-bars.png")
