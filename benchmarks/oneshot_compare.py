"""Which path sampling ranks more repeatably?  Two `oneshot_fidelity.py` score tables compared on their shared
architectures.

    python benchmarks/oneshot_compare.py benchmarks/data/oneshot_fidelity.csv \
        benchmarks/data/oneshot_fidelity_sandwich.csv --names fair sandwich

Each table holds two supernets' scores of the same architectures (columns `supernet_0`, `supernet_1`).  On
the architectures both tables scored (the benchmark draws them from one seeded list, so a shorter run
scores a prefix of a longer one), it prints for each table Kendall's tau between its two supernets and the
correlation r of their 16 bottleneck effects, and the difference of the taus with a bootstrap interval that
resamples the shared architectures (both taus recomputed on each resample, so the interval is paired).
Writes the printout beside the second table (`<name>_vs_<name>.txt`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.rank import bootstrap_interval, kendall_tau  # noqa: E402
from benchmarks.oneshot_fidelity import bit_effects, design, fisher_ci, paired_tau_difference  # noqa: E402
from record.arch import from_flat  # noqa: E402
from space import ArchConfig, SearchSpace  # noqa: E402


def arch_of(key: str) -> ArchConfig:
    """The ArchConfig of a GhostNet key (mca=...|k=...|s=...|w=...|d=...)."""
    fields = dict(part.split("=", 1) for part in key.split("|"))
    bits = {f"mca_{i}": b for i, b in enumerate(fields["mca"])}
    kernels = fields["k"] if fields["k"] != "-" else "3-5-7"
    return from_flat({**bits, "kernels": kernels, "ratio": fields["s"], "width": fields["w"], "dw_size": fields["d"]})


def pair_tau_difference(a: pd.DataFrame, b: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of tau(b) - tau(a), resampling the shared architectures together."""
    return paired_tau_difference(a["supernet_0"], a["supernet_1"], b["supernet_0"], b["supernet_1"], n_boot, seed)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("--names", nargs=2, default=("first", "second"))
    args = p.parse_args()
    a, b = pd.read_csv(args.first), pd.read_csv(args.second)
    shared = [k for k in a["key"] if k in set(b["key"])]
    a = a.set_index("key").loc[shared].reset_index()
    b = b.set_index("key").loc[shared].reset_index()
    space = SearchSpace()
    x = design([arch_of(k) for k in shared], space)
    lines = [f"path samplings compared on the {len(shared)} architectures both runs scored "
             f"({args.first} vs {args.second})"]
    taus = {}
    for name, table in zip(args.names, (a, b)):
        s0, s1 = table["supernet_0"].to_numpy(), table["supernet_1"].to_numpy()
        tau = kendall_tau(s0, s1)
        lo, hi = bootstrap_interval(kendall_tau, s0, s1)
        e0, e1 = bit_effects(s0, x, space.n_blocks), bit_effects(s1, x, space.n_blocks)
        r = float(np.corrcoef(e0, e1)[0, 1])
        rlo, rhi = fisher_ci(r, len(e0))
        taus[name] = tau
        lines.append(f"  {name}: Kendall tau {tau:+.2f} [{lo:+.2f}, {hi:+.2f}]; bottleneck effects r {r:+.2f} "
                     f"[{rlo:+.2f}, {rhi:+.2f}] (n=16); scores SD {100 * s0.std():.2f} / {100 * s1.std():.2f} points")
    lo, hi = pair_tau_difference(a, b)
    first, second = args.names
    lines.append(f"  tau({second}) - tau({first}): {taus[second] - taus[first]:+.2f} [{lo:+.2f}, {hi:+.2f}] "
                 "(paired bootstrap over the shared architectures)")
    text = "\n".join(lines)
    print(text)
    out = Path(args.second).with_name(f"oneshot_{first}_vs_{second}.txt")
    out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
