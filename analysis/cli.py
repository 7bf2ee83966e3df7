"""The analysis commands' kit: `--objectives` and the one-line user errors.

Errors a user can cause are `UserError`s (the project's one user-error class,
from `cli_kit`; a damaged run directory raises its subclass `RunDirError`),
printed by `run_main` as one line with exit status 2.
"""
from __future__ import annotations

from cli_kit import Parser, UserError, run_main
from record.objectives import parse_objectives

__all__ = ["Parser", "UserError", "parse_objectives", "run_main"]
