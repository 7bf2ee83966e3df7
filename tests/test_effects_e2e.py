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
