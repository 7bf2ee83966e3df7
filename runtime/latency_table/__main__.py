"""`python -m runtime.latency_table`: see `runtime.latency_table.cli`."""
from __future__ import annotations

import sys

from cli_kit import run_main

from .cli import main
from .format import PROG

if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG, interrupted="interrupted; measured entries are kept — "
                                                    "run the same command again to continue"))
