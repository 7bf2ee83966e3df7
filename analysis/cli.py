"""The analysis commands' shared flag: `--objectives`.

Errors a user can cause are `UserError`s (the project's one user-error class,
from `space.cli`; a damaged run directory raises its subclass
`RunDirError`), printed by `run_main` as one line with exit status 2.
"""
from __future__ import annotations

from typing import Sequence

from record.objectives import check_objectives
from space.cli import Parser, UserError, run_main

__all__ = ["Parser", "UserError", "parse_objectives", "run_main"]


def parse_objectives(values: Sequence[str] | None) -> list[str] | None:
    """`--objectives val_acc,macs` or `--objectives val_acc macs`; None when not given."""
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    try:
        return check_objectives(names)
    except ValueError as exc:
        raise UserError(f"--objectives: {exc}") from None
