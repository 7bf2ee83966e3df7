"""analysis.effects on a real smoke search (issue #29): the 6-training smoke run is too small for the model,
and every command says so in one line, exit 2, with nothing written; the report says why in its section."""
from __future__ import annotations

import subprocess
import sys

import pytest

from analysis.report import write_report

REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.mark.e2e
def test_effects_on_the_real_smoke_run_refuses_with_the_count_it_needs(smoke_run, tmp_path):
    run, _ = smoke_run
    out = tmp_path / "effects.json"
    best = tmp_path / "best.json"
    for argv in ([sys.executable, "-m", "analysis.effects", str(run), "--json", str(out)],
                 [sys.executable, "-m", "analysis.select", str(run), "--from-effects", "-o", str(best)]):
        proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        err = proc.stderr.strip()
        assert len(err.splitlines()) == 1 and "needs at least" in err and "Traceback" not in err, err
    assert not out.exists() and not best.exists()
    page = write_report([run], tmp_path / "report.html").read_text()
    assert 'id="note-effects-empty"' in page and "needs at least" in page


@pytest.mark.e2e  # times 16 MCA blocks and 4 pairs of networks in PyTorch eager (about half a minute)
def test_the_committed_real_searches_price_every_choice_with_an_interval_and_no_block_below_zero(tmp_path):
    """Issue #37: their old regression priced MCA on bottleneck 0 at -12.4 and -5.9 ms; the runtime cannot."""
    import json
    import shutil

    from analysis.effects.answer import load_effects
    from analysis.effects.prices import CACHE
    from tests.effects_runs import rebuild_committed_run

    data = REPO_ROOT / "benchmarks" / "data"
    first = None
    for seed in (1, 2):
        run = rebuild_committed_run(data / f"effects_repeat_qmc-smoke-seed{seed}.csv", tmp_path / f"seed{seed}")
        if first is not None:  # the same reference network and menu: the prices timed for the first run apply
            shutil.copy(first / CACHE, run / CACHE)
        table = load_effects(run).table
        priced = table[table["effect"].notna()]
        assert priced[["latency_ms", "latency_low", "latency_high"]].notna().all().all()
        assert (priced["latency_low"] <= priced["latency_ms"]).all() and (priced["latency_ms"] <= priced["latency_high"]).all()
        mca = priced[priced["factor"] == "mca"]
        assert len(mca) == 16 and (mca["latency_ms"] >= 0).all() and (mca["latency_low"] >= 0).all()
        assert json.loads((run / CACHE).read_text())["backend"] == "torch"
        first = first or run
