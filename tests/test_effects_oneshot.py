"""analysis.effects on a one-shot run: the supernet is the unit of replication (issue #36, item 5).

The run directory is written as a one-shot search writes it (every architecture
scored on each supernet, the supernet's seed as the row's seed), with planted
per-supernet luck; the statistics of the per-unit fit are proven by simulation
in tests/test_effects_units.py, this checks that the command uses them.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.effects import cli as effects
from analysis.effects.model import build_design, fit, ok_rows
from analysis.load import load_run
from tests.effects_runs import write_oneshot_run


@pytest.fixture(scope="module")
def oneshot_run(tmp_path_factory):
    return write_oneshot_run(tmp_path_factory.mktemp("effects") / "oneshot", n_sampled=60, supernets=3)


def test_a_oneshot_run_is_fitted_per_supernet_and_says_so(oneshot_run, tmp_path, capsys):
    out = tmp_path / "effects.json"
    assert effects.main([str(oneshot_run), "--by", "stage", "--json", str(out), "--max-macs", "18e6"]) == 0
    text = capsys.readouterr().out
    assert text.count("\nmca ") == 16
    for words in ("scores inherited from supernets", "each on 3 supernets", "with the supernet as the unit",
                  "mean ± t(2)·SD/√3", "3 supernets, Holm's first step", "supernets, each scoring these architectures",
                  "Left out of the fit: 2 training(s), scored on fewer than all 3 supernets", "By stage",
                  "The data's Selective MCA"):
        assert words in text, words
    payload = json.loads(out.read_text())
    assert payload["resolving_power"]["unit"] == "supernets" and "supernet as the unit" in payload["interval"]
    placement = payload["placement"]
    assert placement["low"] <= placement["predicted"] <= placement["high"] and placement["macs"] <= 18e6

    # The unit is the supernet: each effect is the mean of the model fitted on one supernet's scores alone,
    # its SE their SD over √3 (the architectures scored on every supernet; the partial one left out).
    rows = ok_rows(load_run(oneshot_run).trials)
    full = rows.groupby("key")["seed"].transform("nunique") == 3
    per_supernet = []
    for _, own in rows[full].groupby("seed"):
        design = build_design(own)
        per_supernet.append(fit(design.X, design.y, design.groups).params)
    per_supernet = np.array([p.drop("const").to_numpy() for p in per_supernet])
    names = [c for c in design.X.columns if c != "const"]
    stated = {f"{e['factor']}={e['level']}": e for e in payload["effects"] if e["effect"] is not None}
    assert sorted(stated) == sorted(names)
    for j, name in enumerate(names):
        assert stated[name]["effect"] == pytest.approx(per_supernet[:, j].mean(), abs=1e-9)
        assert stated[name]["se"] == pytest.approx(per_supernet[:, j].std(ddof=1) / np.sqrt(3), abs=1e-9)


def test_a_oneshot_run_of_one_supernet_is_refused_in_one_line(tmp_path, capsys):
    run = write_oneshot_run(tmp_path / "one", n_sampled=60, supernets=1, partial=0)
    assert effects.run_main(effects.main, [str(run)], prog=effects.PROG) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "from 1 supernet(s)" in err, err
