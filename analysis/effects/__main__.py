"""`python -m analysis.effects RUN`: see `analysis.effects.cli`."""
from __future__ import annotations

import sys

from .cli import PROG, main, run_main

if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
