"""`python -m space.describe`: the table, the JSON totals and one-line errors (exit 2).

The JSON-at-224 check and a few error cases run the real CLI in a
subprocess; the other variations call `main()` in-process to stay fast.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from commands import python_m
from space import PRESETS, build_model, count_macs, count_params, get_preset
from space.describe import describe, main

run_cli = partial(python_m, "space.describe", timeout=120)


def check_rows_add_up(report: dict) -> None:
    rows = [report["stem"], *report["blocks"], report["head"]]
    for field in ("params", "macs"):
        assert sum(r[field] for r in rows) == report["total"][field]
        assert [i for i, r in enumerate(rows[1:], 1) if r[field] <= 0] == [], "every block and the head hold weights"
        assert (rows[0][field] > 0) == (rows[0]["kernel"] is not None), "a stem costs something iff it has a conv"


def test_json_totals_match_paper_figures() -> None:
    proc = run_cli("--preset", "ghostnet", "--input", "224", "--classes", "1000", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert abs(report["total"]["params"] - 5.18e6) <= 0.005 * 5.18e6
    assert abs(report["total"]["macs"] - 141e6) <= 0.01 * 141e6
    assert len(report["blocks"]) == 16 and report["stem_stride"] == 2
    check_rows_add_up(report)


def test_table_lists_every_row_and_totals(capsys: pytest.CaptureFixture) -> None:
    assert main(["--preset", "selective_mca"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("block"))
    for col in ("res", "in", "out", "exp", "stride", "SE", "MCA", "kernels", "params", "MACs"):
        assert col in lines[header].split()
    names = [line.split()[0] for line in lines[header + 1:header + 20]]
    assert names == ["stem", *map(str, range(16)), "head", "total"]
    model = build_model(get_preset("selective_mca"))
    total = lines[header + 19].split()
    assert total[1:] == [f"{count_params(model):,}", f"{count_macs(model):,}"]
    mca_rows = [line.split() for line in lines[header + 2:header + 18] if line.split()[8] == "yes"]
    assert [int(r[0]) for r in mca_rows] == list(range(5, 11))
    assert all(r[9] == "3-5-7" for r in mca_rows)


def test_report_rows_add_up_for_every_preset() -> None:
    for name, config in PRESETS.items():
        report = describe(config)
        check_rows_add_up(report)
        assert report["key"] == config.key, name
        mca = [b for b in report["blocks"] if b["mca"]]
        assert len(mca) == sum(config.mca)
        assert all(b["mca_macs"] > 0 and b["mca_params"] > 0 for b in mca)


def test_overrides_and_config_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "arch.json"
    get_preset("all_mca").save(path)
    assert main(["--config", str(path), "--ratio", "3", "--width", "0.5", "--kernels", "7-11-21",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["key"] == "mca=1111111111111111|k=7-11-21|s=3|w=0.5|d=3"
    assert report["blocks"][-1]["kernels_used"] == [3, 3, 3]  # 2x2 map at 32^2 input
    check_rows_add_up(report)


@pytest.mark.parametrize("args, mentions", [
    (["--preset", "mobilenet"], "unknown preset"),
    (["--ratio", "0"], "ratio"),
    (["--kernels", "4-6"], "kernels"),
    (["--width", "0"], "width"),
    (["--input", "0"], "--input"),
    (["--classes", "0"], "num_classes"),
    (["--preset", "cnn", "--config", "x.json"], "not allowed"),
    (["--config", "/nonexistent/arch.json"], "cannot read"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], mentions: str,
                                          capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and mentions in captured.err


@pytest.mark.parametrize("case", ["malformed_json", "wrong_length", "argparse_type"])
def test_cli_errors_from_a_real_process(case: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    if case == "malformed_json":
        bad.write_text('{"mca": [true, false,')
        args = ["--config", str(bad)]
    elif case == "wrong_length":
        bad.write_text(json.dumps({"mca": [True] * 15}))
        args = ["--config", str(bad)]
    else:
        args = ["--input", "big"]
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("space.describe: error: ")
