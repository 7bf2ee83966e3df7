"""The guide cannot lie: it builds strictly (no broken link or anchor), its flag tables come from the commands'
own parsers, its design page from the imports, and its getting-started commands run as written."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from commands import shell_env, tour_commands

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
sys.path.insert(0, str(DOCS))
import hooks  # noqa: E402  (docs/hooks.py: what the build computes)


def test_the_guide_builds_strictly_with_generated_flags_and_floors(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    search = (tmp_path / "site" / "search" / "index.html").read_text()
    from search.options import build_parser

    flags = {o for a in build_parser()._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    missing = sorted(f for f in flags if f"<code>{f}</code>" not in search)
    assert flags and missing == [], f"flags of search.run missing from the guide: {missing}"
    design = (tmp_path / "site" / "design" / "index.html").read_text()
    assert "<code>runtime</code>" in design and "<code>host</code>" in design


def test_every_flag_marker_names_a_command_and_every_command_has_a_table():
    markers = {m for page in DOCS.glob("*.md") for m in hooks.FLAGS.findall(page.read_text())}
    assert markers == set(hooks.COMMANDS)
    for command in hooks.COMMANDS:
        table = hooks.flag_table(command)
        assert table.count("\n|") >= 3, command


def test_floors_follow_the_imports_and_a_circle_is_refused(monkeypatch):
    table = hooks.floors_table()
    floor = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\| (\d+) \| `(\w+)` \|", table, re.M)}
    assert floor["cli_kit"] == floor["host"] == 0 and floor["trainer"] == floor["runtime"] > floor["space"]
    assert floor["search"] > max(floor["trainer"], floor["runtime"], floor["record"])
    monkeypatch.setattr(hooks, "package_imports", lambda: {"space": {"trainer"}, "trainer": {"space"}})
    with pytest.raises(ValueError, match="import circle"):
        hooks.floors_table()


def test_the_readme_is_a_door_not_a_wall():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)
    first_block = lines[lines.index("```") + 1:]
    first_block = first_block[:first_block.index("```")]
    assert len(first_block) == 2 and first_block[0].startswith("pip install -e . &&") \
        and first_block[1].startswith("pip install -e '.[test]' &&")


@pytest.mark.e2e
def test_the_getting_started_commands_run_as_written(smoke_run, cifar_dir, tmp_path):
    """Each line as written, in a fresh folder; only where CIFAR points is this machine's (the sample).

    The search line ran as written in the session's `smoke_run` (the analysis tests read its run); here
    the other lines run as written on a copy of that folder's `runs/tour`, as the user's next commands."""
    run, search = smoke_run
    assert "Traceback" not in search.stdout + search.stderr
    shutil.copytree(run, tmp_path / "runs" / "tour", ignore=shutil.ignore_patterns(".lock"))
    lines = tour_commands().splitlines()
    script = f"set -e\nexport CIFAR={cifar_dir}\n" + "\n".join(lines[2:])
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=1200,
                          env=shell_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = tmp_path / "runs" / "tour"
    assert (run / "trials.csv").is_file() and (run / "confirm.csv").is_file() and (run / "confirm.md").is_file()
    assert (tmp_path / "report.html").stat().st_size > 0 and (tmp_path / "best.onnx").stat().st_size > 0
    assert "effects: the run is too small to answer (exit 2)" in done.stdout, "what the page says effects does"
    assert "Traceback" not in done.stdout + done.stderr


def test_the_readme_tour_is_the_tested_one():
    readme = (REPO / "README.md").read_text()
    assert re.search(r"```bash\n(.*?)```", readme, re.S).group(1) == tour_commands()
