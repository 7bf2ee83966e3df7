"""Planted-effects benchmark of `python -m analysis.effects`: coverage, detection vs stated power, FWER.

Simulated runs with the design of a real `--sampler qmc` search (the four
presets x 2 seeds, then 100 Sobol draws through the real `SearchSpace`) and
accuracies = known effects + seed noise, analysed by the command's own
functions (`analysis.effects.sim`).  Two noise levels: the `cpu` budget's
measured seed SD (2.13 points, benchmarks/data/proxy_fidelity.txt) and 1
point.  Targets (issue #29): every interval's coverage 93-97 %, the stated
power within 10 points of the observed detection rate, the family-wise error
over the null bottlenecks at or below 5 %.

    python benchmarks/effects_planted.py            # 500 runs per level, about a minute on 2 cores
    python benchmarks/effects_planted.py --runs 100 # quicker
Writes benchmarks/data/effects_planted.txt.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.effects.sim import SEED_SD, simulate  # noqa: E402

OUT = Path(__file__).resolve().parent / "data" / "effects_planted.txt"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", type=Path, default=OUT)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    lines = [f"analysis.effects on planted effects: {args.runs} simulated qmc runs per noise level "
             f"(8 baseline trainings + 100 Sobol draws, 10 designs per level, seed {args.seed})"]
    for level, sd in enumerate((SEED_SD, 0.01)):
        start = time.perf_counter()  # each level its own designs and noise (a shared draw would only rescale)
        lines += simulate(args.runs, sd=sd, seed=args.seed + 100 * level).lines()
        lines.append(f"  ({time.perf_counter() - start:.0f} s)")
    text = "\n".join(lines)
    print(text)
    args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
