"""Accuracy with its uncertainty: the one statistic behind every `val_acc ± se`.

Measured on the `cpu` budget of the CIFAR-10 sample: the seed-to-seed spread
of one architecture's val_acc is about 2.5 points (SD), larger than most
differences between designs, and 517 validation images alone carry a
binomial SE of about 2.1 points.  So an accuracy is only reported with its
standard error, computed here and nowhere else (the search's ledger, the
summary, `analysis.select` and the report all call these functions).

For an architecture with ok trainings x_1 … x_n (one per seed) on a run
with `n_val` validation images::

    val_acc    = mean(x)
    val_acc_se = sqrt( sd_seed² / n  +  p (1 - p) / (n_val · n) ),   p = val_acc

* `sd_seed` is the seed noise *pooled over the run*: the pooled standard
  deviation of every architecture with at least two ok seeds,
  sqrt( Σ_a Σ_i (x_ai - mean_a)² / Σ_a (n_a - 1) ).  One number per run,
  because an architecture with one or two seeds says almost nothing about
  its own spread, while the spread at a fixed budget is much the same from
  one architecture to the next (the baselines are trained with
  `--baseline-seeds` seeds so that every run measures it).
* `p (1 - p) / n_val` is the binomial variance of an accuracy counted on
  `n_val` images.
* The two are added as independent variances, and both shrink with n: each
  seed draws its own stratified validation split (the seed picks the split,
  the training subset, the initialisation and the batch order).  The seed
  spread measured that way already contains some validation sampling, so
  the sum counts that part twice: the SE errs on the safe side, by at most
  a factor sqrt(2).  It is kept because with single-seed runs
  (`--baseline-seeds 1`) the binomial term is the only noise known.

A term that is unknown (no architecture with two seeds yet; a run recorded
before its validation size was) is left out; when both are unknown the SE
is NaN and every comparison with it is "not within noise" (unknown is
never silently treated as zero noise by `within_noise`'s callers, who show
NaN as "?").

Two accuracies are *indistinguishable within noise* when
|Δ| < Z · sqrt(se_a² + se_b²) with Z = 2 (about a 95 % two-sided interval).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence, TypeVar

Z = 2.0  # standard errors apart before two accuracies count as different
CHANCE = 0.1  # val_acc of guessing among CIFAR-10's ten classes

K = TypeVar("K")


@dataclass(frozen=True)
class Estimate:
    """val_acc of one architecture: the mean over its ok seeds and its standard error."""

    mean: float
    se: float  # NaN when no noise term is known
    n: int  # ok seeds averaged

    def show(self, fmt: str = ".4f") -> str:
        """`0.4520 ± 0.0210` (`± ?` when the SE is unknown)."""
        se = "?" if math.isnan(self.se) else format(self.se, fmt)
        return f"{format(self.mean, fmt)} ± {se}"


def pooled_sd(groups: Iterable[Sequence[float]]) -> float | None:
    """Pooled standard deviation of the groups with ≥ 2 values; None when there are none.

    Groups of one value carry no information on spread and are skipped, as
    are NaN values (a training that did not finish has no accuracy).
    """
    ss, dof = 0.0, 0
    for group in groups:
        values = [float(v) for v in group if not math.isnan(float(v))]
        if len(values) < 2:
            continue
        mean = sum(values) / len(values)
        ss += sum((v - mean) ** 2 for v in values)
        dof += len(values) - 1
    return math.sqrt(ss / dof) if dof else None


def binomial_var(p: float, n_val: int | None) -> float | None:
    """Variance of an accuracy p counted on n_val images; None when n_val is unknown."""
    if not n_val or n_val <= 0 or math.isnan(p):
        return None
    p = min(max(p, 0.0), 1.0)
    return p * (1.0 - p) / n_val


def standard_error(mean: float, n: int, sd_seed: float | None, n_val: int | None) -> float:
    """SE of a mean over `n` seeds (see the module docstring); NaN when nothing is known or n = 0."""
    if n <= 0:
        return math.nan
    terms = [v for v in (None if sd_seed is None else sd_seed ** 2, binomial_var(mean, n_val)) if v is not None]
    return math.sqrt(sum(terms) / n) if terms else math.nan


def estimates(groups: Mapping[K, Sequence[float]], n_val: int | None,
              sd_seed: float | None = None) -> dict[K, Estimate]:
    """Estimate of each group (architecture → its ok seeds' accuracies), the seed SD pooled over all groups.

    Pass `sd_seed` to use a seed SD pooled elsewhere (e.g. over a larger set);
    by default it is pooled over `groups` themselves.  Empty groups map to
    Estimate(NaN, NaN, 0).
    """
    if sd_seed is None:
        sd_seed = pooled_sd(groups.values())
    out: dict[K, Estimate] = {}
    for key, values in groups.items():
        values = [float(v) for v in values if not math.isnan(float(v))]
        mean = sum(values) / len(values) if values else math.nan
        out[key] = Estimate(mean, standard_error(mean, len(values), sd_seed, n_val), len(values))
    return out


def noise_of_difference(se_a: float, se_b: float) -> float:
    """SE of a difference of two independent estimates."""
    return math.hypot(se_a, se_b)


def within_noise(a: Estimate, b: Estimate, z: float = Z) -> bool:
    """|Δval_acc| < z · SE of the difference (False when either SE is unknown)."""
    threshold = z * noise_of_difference(a.se, b.se)
    return not math.isnan(threshold) and abs(a.mean - b.mean) < threshold


def cheaper_within_noise(items: Sequence[tuple[K, Estimate, Sequence[float]]]) -> dict[K, K]:
    """For each item, a cheaper one whose val_acc is within noise of it (items without one are left out).

    `items` are (key, val_acc estimate, costs) with every cost "smaller is
    better" (MACs, latency, ...).  b is cheaper than a when it costs no more
    on every cost and less on at least one.  Of several, the one with the
    smallest first cost is named (ties: the higher mean, then the first
    given): the cheapest design that this run cannot tell apart from a.
    """
    out: dict[K, K] = {}
    for key, est, costs in items:
        best = None
        for j, (other, other_est, other_costs) in enumerate(items):
            cheaper = all(c <= d for c, d in zip(other_costs, costs)) and any(c < d for c, d in zip(other_costs, costs))
            if other == key or not cheaper or not within_noise(est, other_est):
                continue
            rank = (tuple(other_costs[:1]), -other_est.mean, j)
            if best is None or rank < best[0]:
                best = (rank, other)
        if best is not None:
            out[key] = best[1]
    return out


def describe_noise(sd_seed: float | None, n_archs: int, n_val: int | None, p: float | None = None) -> str:
    """One line on the run's noise floor, for the summary and the report."""
    seed = (f"seed noise {sd_seed:.4f} SD (pooled over {n_archs} architecture{'s' * (n_archs != 1)} with ≥ 2 seeds)"
            if sd_seed is not None else "seed noise not measured (no architecture has 2 ok seeds; see --baseline-seeds)")
    if n_val:
        var = binomial_var(p if p is not None else 0.5, n_val) or 0.0
        val = f"validation {n_val:,} images (binomial SE {math.sqrt(var):.4f} at val_acc {p if p is not None else 0.5:.2f})"
    else:
        val = "validation size not recorded (binomial term left out)"
    return f"{seed}; {val}"


__all__ = ["CHANCE", "Z", "Estimate", "binomial_var", "cheaper_within_noise", "describe_noise", "estimates", "noise_of_difference",
           "pooled_sd", "standard_error", "within_noise"]
