"""Can you trust this front?  Proxy accuracy against a longer (reference) training.

`search.fidelity` re-trains the front and a seeded sample of a run's ok
trials at a longer budget and writes `fidelity.csv`; the statistics live
here so the report and the command print the same numbers: Kendall's τ and
Spearman's ρ between proxy and reference `val_acc` with seeded bootstrap 95 %
intervals, the top-k overlap, and the share of the proxy front (among the
re-trained architectures) that stays on the reference front.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from record.rundir import FIDELITY_FILE, read_fidelity

from .load import typed_table
from .pareto import pareto_front
from .rank import bootstrap_interval, kendall_tau, spearman_rho

WARN_TAU = 0.5  # below it (or with an interval reaching 0) the report warns


@dataclass(frozen=True)
class Fidelity:
    n: int
    epochs: int
    tau: float
    tau_ci: tuple[float, float]
    rho: float
    rho_ci: tuple[float, float]
    top_k: int
    top_k_overlap: float  # |top-k by proxy ∩ top-k by reference| / k
    front_kept: float  # share of the proxy front (re-trained set) still on the reference front
    pairs: pd.DataFrame  # number, key, label, proxy, reference (+ cost columns)

    @property
    def trustworthy(self) -> bool:
        return self.tau >= WARN_TAU and self.tau_ci[0] > 0

    def lines(self) -> list[str]:
        return [
            f"re-trained {self.n} architectures for {self.epochs} epochs (reference) against the proxy",
            f"Kendall tau = {self.tau:.2f} [{self.tau_ci[0]:.2f}, {self.tau_ci[1]:.2f}] (95% bootstrap interval)",
            f"Spearman rho = {self.rho:.2f} [{self.rho_ci[0]:.2f}, {self.rho_ci[1]:.2f}]",
            f"top-{self.top_k} overlap = {self.top_k_overlap:.2f}; "
            f"proxy-front members still on the reference front = {self.front_kept:.2f}",
        ]

    def warning(self) -> str:
        if self.trustworthy:
            return ""
        return (f"warning: the proxy ranks architectures unlike the reference training (tau {self.tau:.2f}, "
                f"interval [{self.tau_ci[0]:.2f}, {self.tau_ci[1]:.2f}]): the front is not to be trusted "
                "at this budget; search with a longer --epochs / --budget")


def load_fidelity(run_path: Path) -> pd.DataFrame | None:
    """fidelity.csv of a run as a typed frame; None when the check was never run."""
    return typed_table(Path(run_path) / FIDELITY_FILE, read_fidelity, ints=("number", "epochs", "seed"),
                       floats=("val_acc", "train_seconds"))


def fidelity(ok: pd.DataFrame, reference: pd.DataFrame, objectives: Sequence[str], top_k: int = 3,
             seed: int = 0) -> Fidelity | None:
    """Compare proxy (`ok`, the run's ok trials) with the reference re-trainings; None below 3 pairs."""
    ref = reference[reference["status"] == "ok"][["key", "val_acc", "epochs"]].rename(columns={"val_acc": "reference"})
    # `epochs` of the pairs is the reference's (the proxy's own column would clash in the merge)
    pairs = ok.drop(columns=["epochs"], errors="ignore").merge(ref, on="key").rename(columns={"val_acc": "proxy"})
    if len(pairs) < 3:
        return None
    x, y = pairs["proxy"].to_numpy(float), pairs["reference"].to_numpy(float)
    k = min(top_k, len(pairs))
    top = lambda v: set(np.argsort(-v, kind="stable")[:k])  # noqa: E731
    costs = [o for o in objectives if o != "val_acc"]
    proxy_front = set(pareto_front(pairs.rename(columns={"proxy": "val_acc"}), ["val_acc", *costs])["key"])
    ref_front = set(pareto_front(pairs.rename(columns={"reference": "val_acc"}), ["val_acc", *costs])["key"])
    return Fidelity(
        n=len(pairs), epochs=int(pairs["epochs"].iloc[0]),
        tau=kendall_tau(x, y), tau_ci=bootstrap_interval(kendall_tau, x, y, seed=seed),
        rho=spearman_rho(x, y), rho_ci=bootstrap_interval(spearman_rho, x, y, seed=seed),
        top_k=k, top_k_overlap=len(top(x) & top(y)) / k,
        front_kept=len(proxy_front & ref_front) / len(proxy_front) if proxy_front else float("nan"),
        pairs=pairs,
    )
