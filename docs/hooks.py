"""Pages the guide computes when it is built, so they cannot drift from the code.

- `<!-- flags: COMMAND -->` becomes the flag table of COMMAND, read from the
  command's own parser (`build_parser()`: the same object `--help` prints).
- `<!-- floors -->` becomes the package floors, read from the code's imports
  with the same reader as `tests/test_layering.py`.

MkDocs runs `on_page_markdown` for every page (`hooks:` in mkdocs.yml).
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_layering import PACKAGES, imported_roots  # noqa: E402  the layering test's floors and import reader
# command -> the module whose build_parser() it parses its flags with
COMMANDS = {
    "search.run": "search.options",
    "search.confirm": "search.confirm",
    "search.fidelity": "search.fidelity",
    "analysis.report": "analysis.report",
    "analysis.select": "analysis.select",
    "analysis.effects": "analysis.effects.cli",
    "trainer.train": "trainer.train",
    "runtime.export": "runtime.export",
    "search.int8": "search.int8",
    "runtime.latency_table": "runtime.latency_table.cli",
    "runtime.latency_table export-blocks": "runtime.block_export",
    "space.describe": "space.describe",
}
FLAGS = re.compile(r"<!-- flags: ([\w. -]+?) -->")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def flag_table(command: str) -> str:
    """A markdown table of `command`'s arguments: flag, meaning (its help), default."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    parser = importlib.import_module(COMMANDS[command]).build_parser()
    rows = ["| flag | meaning | default |", "|---|---|---|"]
    for action in parser._actions:  # argparse keeps no public list; sphinx-argparse reads the same one
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}` (positional)"
        if action.metavar and action.option_strings:
            names += f" `{action.metavar}`"
        help_text = (action.help or "") % {**vars(action), "prog": parser.prog} if action.help else ""
        default = action.default
        shown = "" if default in (None, argparse.SUPPRESS, False) or action.option_strings == [] else f"`{default}`"
        rows.append(f"| {names} | {_cell(help_text)} | {shown} |")
    return f"`python -m {command}`\n\n" + "\n".join(rows)


def package_imports() -> dict[str, set[str]]:
    """Package -> the packages of ours its modules import (runtime imports only; tests excluded)."""
    found = {}
    for package in PACKAGES:
        names: set[str] = set()
        for path in (REPO / package).rglob("*.py"):
            names |= {n for n in imported_roots(path.read_text()) if n in PACKAGES and n != package}
        found[package] = names
    return found


def floors_table() -> str:
    """Each package on its floor (one above the highest it imports: the ground is 0), what it imports, its size."""
    imports = package_imports()
    floor: dict[str, int] = {}

    def floor_of(package: str, seen: tuple[str, ...] = ()) -> int:
        if package in seen:
            raise ValueError(f"import circle: {' -> '.join((*seen, package))}")
        if package not in floor:
            floor[package] = 1 + max((floor_of(n, (*seen, package)) for n in imports[package]), default=-1)
        return floor[package]

    for package in imports:
        floor_of(package)
    rows = ["| floor | package | imports | files | lines |", "|---|---|---|---|---|"]
    for package in sorted(imports, key=lambda p: (floor[p], PACKAGES.index(p))):
        files = list((REPO / package).rglob("*.py"))
        lines = sum(len(f.read_text().splitlines()) for f in files)
        rows.append(f"| {floor[package]} | `{package}` | {', '.join(f'`{n}`' for n in sorted(imports[package])) or '—'}"
                    f" | {len(files)} | {lines:,} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = FLAGS.sub(lambda m: flag_table(m.group(1)), markdown)
    return markdown.replace("<!-- floors -->", floors_table())
