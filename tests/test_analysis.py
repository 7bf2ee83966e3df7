"""analysis/ on real run directories: the smoke search's, and synthetic ones for edge cases.

Synthetic runs (analysis.synthetic) hold real ArchConfigs with real MAC
counts, written through search.rundir like a search writes them; only the
accuracy is made up.  They cover what a 6-trial smoke search does not:
failures, a single trial, a torn last line, no latency.
"""
from __future__ import annotations

import json
import math
from functools import partial
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from analysis.load import RunData, RunError, load_run
from analysis.pareto import hypervolume_history, pareto_front
from analysis.report import write_report
from analysis.select import best_under, knee_point, select
from commands import python_m
from runbuilder import build_run
from record.rundir import COLUMNS, RunDir
from space import PRESETS, load_arch

FIGURES = ["fig-acc-macs", "fig-acc-latency", "fig-mca-heatmap", "fig-parallel", "fig-hypervolume"]
# trial 6 fails, trial 7 is infeasible: they must be counted but never plotted or selected
STATUSES = ["ok"] * 6 + ["failed", "infeasible"]


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("synthetic") / "synth", 4, statuses=STATUSES)


run_cli = partial(python_m, timeout=300)


class _Refs(HTMLParser):
    """Every src/href attribute of every element (script bodies are not parsed as markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.scripts_with_src = 0

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "data", "action") and value:
                self.refs.append(value)
            if tag == "script" and name == "src":
                self.scripts_with_src += 1


def assert_offline(html_text: str) -> None:
    """No element points at the network, and outside the embedded plotly.js no http reference at all."""
    refs = _Refs()
    refs.feed(html_text)
    assert refs.scripts_with_src == 0
    assert not [r for r in refs.refs if r.lower().startswith(("http:", "https:", "//"))]
    start = html_text.index('<script type="text/javascript" id="plotlyjs">')
    end = html_text.index("</script>", start)
    outside = html_text[:start] + html_text[end:]
    for pattern in ('src="http', 'href="http', "src='http", "href='http", "cdn.plot.ly", "@import"):
        assert pattern not in outside
    assert html_text.count('id="plotlyjs"') == 1  # plotly.js embedded exactly once


# --------------------------------------------------------------------- loading
def test_load_types_and_labels(synthetic_run):
    data = load_run(synthetic_run)
    t = data.trials
    assert len(t) == 8 and list(t["number"]) == list(range(8))
    assert data.meta["objectives"] == ["val_acc", "macs"] and data.name == "synth"
    assert t["val_acc"].dtype == float and t["ratio"].dtype.kind == "i"
    assert t["mca_0"].dtype == bool and str(t["macs"].dtype) == "Int64"
    assert list(t["status"]) == STATUSES
    assert t.loc[t["status"] != "ok", "val_acc"].isna().all() and t.loc[t["status"] == "ok", "val_acc"].notna().all()
    base = t[t["preset"] != ""]
    assert list(base["label"]) == list(PRESETS) and list(base["number"]) == [0, 1, 2, 3]
    assert list(t["label"].iloc[4:]) == [f"#{i}" for i in range(4, 8)]
    sel = t[t["preset"] == "selective_mca"].iloc[0]
    assert sel["mca_string"] == PRESETS["selective_mca"].mca_string == "0000011111100000"
    assert sel["mca_kernels"] == sel["kernels"] == "3-5-7"
    assert (t.loc[t["preset"].isin(["cnn", "ghostnet"]), "mca_kernels"] == "-").all()
    for _, row in t.iterrows():  # the arch columns decode back to the recorded architecture
        assert RunData.arch(row).key == row["key"]
    assert len(data.ok) == 6


def test_torn_last_line_is_ignored(tmp_path):
    run = build_run(tmp_path / "torn", 2, torn_tail=True)
    assert not (run / "trials.csv").read_text().endswith("\n")
    assert len(load_run(run).trials) == 6


def test_not_a_run(tmp_path):
    with pytest.raises(RunError, match="not a run directory"):
        load_run(tmp_path / "missing")
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(RunError, match="not valid JSON"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"version": 1, "objectives": ["val_acc"]}))
    with pytest.raises(RunError, match="no trials.csv"):
        load_run(tmp_path)
    (tmp_path / "trials.csv").write_text("a,b\n1,2\n")
    with pytest.raises(RunError, match="columns differ"):
        load_run(tmp_path)


def make_empty_run(path: Path) -> Path:
    run = RunDir.create(path, {"name": "empty", "objectives": ["val_acc", "macs"], "trials": 5})
    run.close()
    assert (path / "trials.csv").read_text().strip() == ",".join(COLUMNS)
    return path


def test_empty_run(tmp_path):
    with pytest.raises(RunError, match="empty"):
        load_run(make_empty_run(tmp_path / "empty"))


# ------------------------------------------------------------------- selection
def test_best_under_and_knee(synthetic_run):
    data = load_run(synthetic_run)
    ok = data.ok
    limit = float(ok["macs"].astype(float).median())
    row = best_under(data.trials, max_macs=limit)
    fits = ok[ok["macs"].astype(float) <= limit]
    assert row["status"] == "ok" and row["val_acc"] == fits["val_acc"].max() and row["macs"] <= limit
    lat_limit = float(ok["latency_ms"].median())
    row = best_under(data.trials, max_macs=limit, max_latency_ms=lat_limit)
    assert row["macs"] <= limit and row["latency_ms"] <= lat_limit
    front = pareto_front(ok, ["val_acc", "macs"])
    knee = knee_point(front, ["val_acc", "macs"])
    assert knee["number"] in set(front["number"])
    assert select(data)["number"] == knee["number"]  # no budget: the knee of the run's objectives
    # one objective: the knee is simply the best trial
    assert knee_point(pareto_front(ok, ["val_acc"]), ["val_acc"])["val_acc"] == ok["val_acc"].max()


def test_single_trial_run(tmp_path):
    run = build_run(tmp_path / "one", 1, baselines=False, trials=20)
    data = load_run(run)
    assert len(data.trials) == 1
    assert select(data)["number"] == 0
    hist = hypervolume_history(data.trials, ["val_acc", "macs"])
    assert list(hist["hypervolume"]) == pytest.approx([1.1 ** 2])
    out = write_report([run], tmp_path / "one.html")
    text = out.read_text()
    assert "1 / 20" in text  # trials done / requested
    assert_offline(text)


def test_report_skips_latency_when_not_measured(tmp_path):
    run = build_run(tmp_path / "nolat", 2, latency=False)
    text = write_report([run], tmp_path / "nolat.html").read_text()
    assert 'id="note-no-latency"' in text and 'id="fig-acc-latency"' not in text
    for fig in set(FIGURES) - {"fig-acc-latency"}:
        assert f'id="{fig}"' in text


def test_report_of_a_run_with_failures(synthetic_run, tmp_path):
    text = write_report([synthetic_run], tmp_path / "r.html").read_text()
    assert_offline(text)
    for fig in FIGURES:
        assert f'id="{fig}"' in text
    assert "failed 1" in text and "infeasible 1" in text and 'id="note-not-ok"' in text
    assert "7 / 8" in text  # infeasible trials were never trained
    assert 'class="knee"' in text


# ------------------------------------------------------- CLIs on the smoke run
@pytest.mark.e2e
def test_load_smoke_run(smoke_run):
    run_dir, _ = smoke_run
    data = load_run(run_dir)
    assert len(data.trials) == 6
    assert set(data.trials["preset"]) - {""} == set(PRESETS)
    assert data.meta["objectives"] == ["val_acc", "macs", "latency_ms"]
    assert (data.ok["val_acc"].between(0, 1)).all() and len(data.ok) >= 1
    # Learning curves join their trainings: one epoch each on the smoke budget, every ok training present.
    curves = data.curves
    assert len(curves) == 6 and set(curves["status"]) == {"ok"} and set(curves["epoch"]) == {1}
    merged = curves.merge(data.trials[["key", "seed", "val_acc"]], on=["key", "seed"], suffixes=("", "_final"))
    assert (merged["val_acc"] == merged["val_acc_final"]).all(), "the last epoch's accuracy is the training's"


@pytest.mark.e2e
def test_select_cli_writes_a_loadable_arch(smoke_run, tmp_path):
    run_dir, _ = smoke_run
    out = tmp_path / "best.json"
    proc = run_cli("analysis.select", str(run_dir), "--max-macs", "20e6", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    config = load_arch(out)
    ok = load_run(run_dir).ok
    fits = ok[ok["macs"].astype(float) <= 20e6]
    chosen = fits[fits["key"] == config.key]
    assert len(chosen) == 1 and chosen["val_acc"].iloc[0] == fits["val_acc"].max()
    assert config.key in proc.stdout and "wrote" in proc.stdout
    # no budget: the knee point, also loadable
    proc = run_cli("analysis.select", str(run_dir), "-o", str(tmp_path / "knee.json"))
    assert proc.returncode == 0, proc.stderr
    assert load_arch(tmp_path / "knee.json").key == _knee_by_hand(ok, load_run(run_dir).meta["objectives"])


def _knee_by_hand(ok: pd.DataFrame, objectives: list[str]) -> str:
    """The key of the front's knee, from the definitions: the front is what nothing dominates (val_acc
    higher is better, every cost lower); each objective is scaled to [0, 1] over the front (0 best); the
    knee is the member nearest the ideal point, ties to the lower trial number."""
    sign = {name: -1.0 if name == "val_acc" else 1.0 for name in objectives}  # as costs: lower is better
    points = [(tuple(sign[o] * float(getattr(r, o)) for o in objectives), int(r.number), r.key)
              for r in ok.itertuples()]
    front = [p for p in points if not any(all(a <= b for a, b in zip(q[0], p[0])) and q[0] != p[0] for q in points)]
    low = [min(p[0][i] for p in front) for i in range(len(objectives))]
    high = [max(p[0][i] for p in front) for i in range(len(objectives))]

    def distance(p: tuple) -> float:
        scaled = [(v - lo) / (hi - lo) if hi > lo else 0.0 for v, lo, hi in zip(p[0], low, high)]
        return round(math.hypot(*scaled), 12)

    return min(front, key=lambda p: (distance(p), p[1]))[2]


@pytest.mark.e2e
def test_report_cli_writes_offline_html(smoke_run, tmp_path):
    run_dir, _ = smoke_run
    out = tmp_path / "report.html"
    proc = run_cli("analysis.report", str(run_dir), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert_offline(text)
    for fig in ("fig-acc-macs", "fig-mca-heatmap", "fig-parallel", "fig-hypervolume", "fig-curves"):
        assert f'id="{fig}"' in text
    assert "e2e" in text


@pytest.fixture(scope="session")
def bad_runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    (root / "not-a-run").mkdir()
    return {"not-a-run": root / "not-a-run", "empty": make_empty_run(root / "empty")}


CASES = [
    ("analysis.select", "not-a-run", "not a run directory"),
    ("analysis.select", "empty", "is empty"),
    ("analysis.select", "unknown-objective", "unknown objective 'accuracy'"),
    ("analysis.select", "budget", "no ok trial meets the budget"),
    ("analysis.select", "bad-flag", "unrecognized arguments"),
    ("analysis.select", "bad-budget", "--max-macs must be a positive number"),
    ("analysis.report", "not-a-run", "not a run directory"),
    ("analysis.report", "empty", "is empty"),
    ("analysis.report", "unknown-objective", "unknown objective 'accuracy'"),
    ("analysis.report", "bad-flag", "unrecognized arguments"),
]


def _error_args(case: str, bad_runs: dict[str, Path], synthetic_run: Path, out: Path) -> list[str]:
    run = bad_runs.get(case, synthetic_run)
    extra = {"unknown-objective": ["--objectives", "val_acc,accuracy"], "budget": ["--max-macs", "1"],
             "bad-flag": ["--frobnicate"], "bad-budget": ["--max-macs", "-5"]}.get(case, [])
    return [str(run), "-o", str(out), *extra]


@pytest.mark.parametrize("module, case, expected", CASES)
def test_user_errors_exit_2_with_one_line(module, case, expected, bad_runs, synthetic_run, tmp_path, capsys):
    """In-process (fast): the same `run_main` that `python -m` calls."""
    import importlib

    from analysis.cli import run_main

    main = importlib.import_module(module).main
    prog = module  # what `python -m <module>` passes
    status = run_main(main, _error_args(case, bad_runs, synthetic_run, tmp_path / "out"), prog=prog)
    captured = capsys.readouterr()
    assert status == 2, captured.out + captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ") and expected in lines[0], captured.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("module, case, expected", [CASES[3], CASES[6]])
def test_user_errors_through_python_m(module, case, expected, bad_runs, synthetic_run, tmp_path):
    """The real command line: exit status 2, one line on stderr, no traceback."""
    proc = run_cli(module, *_error_args(case, bad_runs, synthetic_run, tmp_path / "out"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{module}: error: ") and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_without_ok_trials(tmp_path, synthetic_run):
    run = build_run(tmp_path / "allfailed", 1, baselines=False, statuses=["failed"])
    text = write_report([run], tmp_path / "f.html").read_text()
    assert 'id="note-empty"' in text and 'id="fig-acc-macs"' not in text
    assert_offline(text)
    with pytest.raises(ValueError, match="no ok trial"):
        select(load_run(run))
    # compared with a run that has ok trials, the comparison still draws
    text = write_report([synthetic_run, run], tmp_path / "c.html").read_text()
    assert 'id="fig-compare-front"' in text and 'id="fig-compare-hypervolume"' in text


def test_empty_run_can_be_loaded_for_progress(tmp_path):
    data = load_run(make_empty_run(tmp_path / "starting"), allow_empty=True)
    assert data.trials.empty and list(data.trials.columns)[: len(COLUMNS)] == COLUMNS
    assert pareto_front(data.ok, ["val_acc", "macs"]).empty
