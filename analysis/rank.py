"""Rank agreement between two scorings of the same architectures, with its uncertainty.

Used to ask whether a cheap proxy ranks architectures like a longer training
does.  Kendall's τ-b and Spearman's ρ are written out here (numpy, O(n²) for
τ — runs hold hundreds of architectures, not millions) so `analysis` needs no
SciPy at run time; the tests check both against `scipy.stats`, ties included.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd


def _paired(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    """Both sides as float arrays; ValueError when their lengths differ, None below 2 points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} values but y has {len(y)}")
    return (x, y) if len(x) >= 2 else None


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b (ties in either variable corrected, as scipy's default); NaN below 2 points or a constant side."""
    pair = _paired(x, y)
    if pair is None:
        return float("nan")
    x, y = pair
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    upper = np.triu_indices(len(x), k=1)
    dx, dy = dx[upper], dy[upper]
    concordant_minus_discordant = float(np.sum(dx * dy))
    untied_x, untied_y = float(np.count_nonzero(dx)), float(np.count_nonzero(dy))
    if untied_x == 0 or untied_y == 0:
        return float("nan")
    return concordant_minus_discordant / np.sqrt(untied_x * untied_y)


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ: Pearson correlation of the average ranks (ties share their mean rank); NaN for a constant side."""
    pair = _paired(x, y)
    if pair is None:
        return float("nan")
    rx, ry = (pd.Series(v).rank(method="average").to_numpy() for v in pair)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def bootstrap_interval(stat: Callable[[np.ndarray, np.ndarray], float], x: Sequence[float], y: Sequence[float],
                       *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat(x, y)`, resampling the paired points; seeded, reproducible.

    Resamples where the statistic is undefined (all ties) are dropped.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        v = stat(x[idx], y[idx])
        if np.isfinite(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
