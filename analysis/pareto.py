"""Pareto front and hypervolume, exact, for any number of objectives.

Optuna 5 exposes no public hypervolume function (only the private
`optuna._hypervolume` and a plotting helper), so the computation lives here:
a 2-D sweep and, for more objectives, exact slicing along the last objective
(HSO).  Runs hold hundreds of trials, not millions, so exactness beats speed.

Conventions
-----------
* Every objective is first turned into minimisation: maximised objectives
  (``val_acc``) are negated (or, when normalised, mirrored).
* Normalised hypervolume (the default, used by reports): each objective is
  scaled to [0, 1] over given *bounds* — by default the range of the rows
  passed in; for comparing runs, the range over the union of their ok trials
  (`objective_bounds` of the concatenation) — with 0 the best value seen and 1
  the worst.  The reference point is ``REFERENCE = 1.1`` on every axis, so the
  worst point still adds a thin slab and values lie in [0, 1.1**d].
* An explicit ``reference`` is in the objectives' own units (e.g. val_acc 0.1,
  macs 50e6) and switches normalisation off.
* Reports use a *fixed box* (`hypervolume_history(..., box=...)`): each
  objective scaled between its ideal value (val_acc 1, zero cost) and a
  reference that does not move with the trials (chance accuracy 0.1, costs
  from the baselines; `fixed_box`), reference point 1 on every axis — so the
  curve is the share of that box the front dominates, in [0, 1], and rises
  only when the search finds something the baselines did not.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from record.objectives import check_objectives, directions_of
from record.stats import CHANCE

REFERENCE = 1.1
Bounds = Mapping[str, tuple[float, float]]
Box = Mapping[str, tuple[float, float]]  # objective -> (ideal, reference), in the objective's units
BOX_COST_FACTOR = 2.0  # reference cost = this x the costliest baseline (room for nets above all_mca)


def resolve_directions(objectives: Sequence[str], directions: Sequence[str] | None = None) -> list[str]:
    """Directions for `objectives`: given ones validated (any spelling), else the vocabulary's."""
    if directions is None:
        return directions_of(objectives)
    return directions_of(objectives, directions)


def objective_values(df: pd.DataFrame, objectives: Sequence[str]) -> np.ndarray:
    """The objective columns as a float matrix (NaN where missing); ValueError if a column is absent."""
    missing = [o for o in objectives if o not in df.columns]
    if missing:
        raise ValueError(f"objective column {missing[0]!r} is not in the trials table")
    if df.empty:
        return np.empty((0, len(objectives)))
    return np.column_stack([pd.to_numeric(df[o], errors="coerce").astype(float).to_numpy() for o in objectives])


def minimization_matrix(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Negate maximised columns so that smaller is better everywhere."""
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.asarray(values, dtype=float) * sign


def non_dominated_mask(points: np.ndarray) -> np.ndarray:
    """True for rows (minimisation, finite) that no other row dominates.

    a dominates b when a <= b everywhere and a < b somewhere, so identical
    points never dominate each other and are all kept.
    """
    points = np.asarray(points, dtype=float)
    keep = np.ones(len(points), dtype=bool)
    for i, p in enumerate(points):
        dominators = np.all(points <= p, axis=1) & np.any(points < p, axis=1)
        keep[i] = not dominators.any()
    return keep


def pareto_front(df: pd.DataFrame, objectives: Sequence[str], directions: Sequence[str] | None = None) -> pd.DataFrame:
    """The exact non-dominated subset of `df` (same columns, original order).

    Rows with a missing objective value are left out; callers pass the trials
    they want compared (usually the ok ones).  Raises ValueError on an unknown
    objective, listing the allowed ones.
    """
    objectives = check_objectives(objectives)
    directions = resolve_directions(objectives, directions)
    values = objective_values(df, objectives)
    finite = np.isfinite(values).all(axis=1) if len(values) else np.zeros(0, dtype=bool)
    mask = np.zeros(len(df), dtype=bool)
    idx = np.flatnonzero(finite)
    mask[idx] = non_dominated_mask(minimization_matrix(values[idx], directions))
    return df.loc[mask]


# ------------------------------------------------------------------ hypervolume
def hypervolume_min(points: np.ndarray, reference: Sequence[float]) -> float:
    """Exact hypervolume dominated by `points` (minimisation) and bounded by `reference`.

    Points not strictly better than the reference in every objective add
    nothing; NaN rows are ignored.
    """
    ref = np.asarray(reference, dtype=float)
    pts = np.asarray(points, dtype=float).reshape(-1, len(ref))
    pts = pts[np.isfinite(pts).all(axis=1)]
    pts = pts[(pts < ref).all(axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = np.unique(pts, axis=0)
    pts = pts[non_dominated_mask(pts)]
    return float(_hv(pts, ref))


def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    d = pts.shape[1]
    if d == 1:
        return float(ref[0] - pts[:, 0].min())
    if d == 2:
        order = np.lexsort((pts[:, 1], pts[:, 0]))
        xs, ys = pts[order, 0], pts[order, 1]
        best_y = np.minimum.accumulate(ys)
        widths = np.diff(np.append(xs, ref[0]))
        return float(np.sum(widths * (ref[1] - best_y)))
    # Slice along the last objective: between consecutive z values the
    # cross-section is the (d-1)-D hypervolume of the points below the slice.
    order = np.argsort(pts[:, -1], kind="stable")
    pts = pts[order]
    zs = np.append(pts[:, -1], ref[-1])
    total, section = 0.0, 0.0
    below = np.empty((0, d - 1))  # non-dominated projections of the points below the slice
    for i in range(len(pts)):
        p = pts[i, :-1]
        if not (len(below) and np.all(below <= p, axis=1).any()):  # else the cross-section is unchanged
            below = np.vstack([below[~np.all(p <= below, axis=1)], p])
            section = _hv(below, ref[:-1])
        total += (zs[i + 1] - zs[i]) * section
    return total


def objective_bounds(df: pd.DataFrame, objectives: Sequence[str]) -> dict[str, tuple[float, float]]:
    """(min, max) of each objective over rows where every objective is known.

    Pass the concatenation of several runs' trials to compare them on one scale.
    """
    values = objective_values(df, objectives)
    values = values[np.isfinite(values).all(axis=1)] if len(values) else values
    if len(values) == 0:
        return {o: (0.0, 1.0) for o in objectives}
    return {o: (float(values[:, j].min()), float(values[:, j].max())) for j, o in enumerate(objectives)}


def normalise(values: np.ndarray, objectives: Sequence[str], directions: Sequence[str], bounds: Bounds) -> np.ndarray:
    """Map each objective to [0, 1] over `bounds`: 0 = best, 1 = worst (a constant one maps to 0)."""
    out = np.empty_like(np.asarray(values, dtype=float))
    for j, (o, d) in enumerate(zip(objectives, directions)):
        lo, hi = bounds[o]
        span = hi - lo if hi > lo else 1.0
        col = values[:, j]
        out[:, j] = (hi - col) / span if d == "maximize" else (col - lo) / span
    return out


def hypervolume(
    points: pd.DataFrame,
    objectives: Sequence[str],
    directions: Sequence[str] | None = None,
    reference: Sequence[float] | None = None,
    bounds: Bounds | None = None,
) -> float:
    """Exact hypervolume of a set of trials, `objectives` naming their columns (raw points: `hypervolume_min`).

    Without `reference`, values are normalised over `bounds` (default: these
    rows' own range) and the reference is 1.1 on every axis — see the module
    docstring.  With `reference` (objective units, e.g. ``[0.1, 50e6]`` for
    val_acc, macs) no normalisation happens.
    """
    objectives = check_objectives(objectives)
    values = objective_values(points, objectives)
    directions = resolve_directions(objectives, directions)
    values = values[np.isfinite(values).all(axis=1)] if len(values) else values
    if reference is not None:
        if len(reference) != len(objectives):
            raise ValueError(f"reference has {len(reference)} values for {len(objectives)} objectives")
        ref = minimization_matrix(np.asarray([reference], dtype=float), directions)[0]
        return hypervolume_min(minimization_matrix(values, directions), ref)
    if len(values) == 0:
        return 0.0
    if bounds is None:
        bounds = {o: (float(values[:, j].min()), float(values[:, j].max())) for j, o in enumerate(objectives)}
    return hypervolume_min(normalise(values, objectives, directions, bounds), [REFERENCE] * len(objectives))


def hypervolume_history(
    df: pd.DataFrame,
    objectives: Sequence[str],
    directions: Sequence[str] | None = None,
    bounds: Bounds | None = None,
    box: Box | None = None,
) -> pd.DataFrame:
    """Normalised hypervolume after each trial, in `number` order.

    One row per trial (columns number, status, completed = ok trials so far,
    hypervolume); only ok trials with every objective known move the curve.
    The bounds are fixed for the whole curve (default: the final range of the
    ok trials), which makes it non-decreasing and comparable between runs
    given the same bounds.

    With `box` ({objective: (ideal, reference)}, e.g. from `fixed_box`) each
    objective is scaled so that the ideal maps to 0 and the reference to 1,
    the reference point is 1 on every axis, and the value is the share of the
    box dominated (points beyond the reference add nothing).

    When `df` has a `key` column, rows with the same key are seeds of one
    architecture: after each trial its point is the mean of its ok seeds so
    far, so a new seed can move a point back and the curve can then dip.
    Without repeated keys this is exactly the one-point-per-trial curve.
    """
    objectives = check_objectives(objectives)
    directions = resolve_directions(objectives, directions)
    df = df.sort_values("number", kind="stable") if "number" in df.columns else df
    status = df["status"].to_numpy() if "status" in df.columns else np.array(["ok"] * len(df))
    values = objective_values(df, objectives)
    usable = (status == "ok") & (np.isfinite(values).all(axis=1) if len(values) else np.zeros(0, dtype=bool))
    if box is not None:
        bounds, level = {o: (min(box[o]), max(box[o])) for o in objectives}, 1.0
    else:
        bounds, level = (objective_bounds(df[usable], objectives) if bounds is None else bounds), REFERENCE
    keys = df["key"].astype(str).to_numpy() if "key" in df.columns else np.arange(len(df)).astype(str)
    running = _RunningFront(objectives, directions, bounds, np.full(len(objectives), level))
    completed, hv, curve = 0, 0.0, []
    for i in range(len(df)):
        if usable[i]:
            completed += 1
            hv = running.add(keys[i], values[i])
        curve.append((completed, hv))
    numbers = df["number"].to_numpy() if "number" in df.columns else np.arange(len(df))
    return pd.DataFrame({"number": numbers, "status": status,
                         "completed": [c for c, _ in curve], "hypervolume": [h for _, h in curve]})


class _RunningFront:
    """The normalised front of every architecture's mean so far, and its hypervolume, one result at a time."""

    def __init__(self, objectives: list[str], directions: list[str], bounds: Bounds, ref: np.ndarray) -> None:
        self.objectives, self.directions, self.bounds, self.ref = objectives, directions, bounds, ref
        self.front = np.empty((0, len(objectives)))
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, int] = {}
        self.hv = 0.0

    def add(self, key: str, values: np.ndarray) -> float:
        """Count one result of architecture `key`; the hypervolume after it."""
        repeat = key in self.sums
        self.sums[key] = self.sums.get(key, 0.0) + values
        self.counts[key] = self.counts.get(key, 0) + 1
        if repeat:  # a mean moved: rebuild the front from every architecture's current mean
            means = np.array([self.sums[k] / self.counts[k] for k in self.sums])
            norm = normalise(means, self.objectives, self.directions, self.bounds)
            self.front = norm[non_dominated_mask(norm)]
            self.hv = hypervolume_min(self.front, self.ref)
            return self.hv
        p = normalise(values[None, :], self.objectives, self.directions, self.bounds)[0]
        if not (len(self.front) and np.any(np.all(self.front <= p, axis=1))):  # a dominated point adds nothing
            self.front = np.vstack([self.front[~np.all(p <= self.front, axis=1)], p])
            self.hv = hypervolume_min(self.front, self.ref)
        return self.hv


def fixed_box(archs: pd.DataFrame, objectives: Sequence[str]) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
    """A hypervolume box that does not move with the trials: ({objective: (ideal, reference)}, {objective: origin}).

    val_acc: from 1 (ideal) down to chance, 0.1 — a net at chance adds
    nothing.  Each cost: from 0 up to `BOX_COST_FACTOR` x the costliest
    baseline preset of the run (their costs are known once the baselines
    are in, before the search proper starts).  A cost without a baseline
    value (a run with --no-baselines, or latency not measured) falls back to
    the same factor over the run's own ok trials, which does move with them;
    the origin says which.  `archs` are the run's architectures (means).
    """
    box: dict[str, tuple[float, float]] = {}
    origin: dict[str, str] = {}
    for o, d in zip(objectives, resolve_directions(list(objectives))):
        if d == "maximize":  # only val_acc is maximised (record.objectives)
            box[o], origin[o] = (1.0, CHANCE), "chance accuracy"
            continue
        ok = archs[archs["status"] == "ok"] if "status" in archs.columns else archs
        base = pd.to_numeric(ok.loc[ok["preset"] != "", o], errors="coerce").astype(float).dropna() \
            if "preset" in ok.columns else pd.Series(dtype=float)
        if len(base):
            box[o] = (0.0, BOX_COST_FACTOR * float(base.max()))
            origin[o] = f"{BOX_COST_FACTOR:g} x the costliest baseline"
        else:
            own = pd.to_numeric(ok[o], errors="coerce").astype(float).dropna()
            box[o] = (0.0, BOX_COST_FACTOR * float(own.max()) if len(own) else 1.0)
            origin[o] = f"{BOX_COST_FACTOR:g} x this run's costliest trial (no baseline measured it; moves with the trials)"
    return box, origin


__all__ = [
    "REFERENCE", "pareto_front", "non_dominated_mask", "hypervolume", "hypervolume_min",
    "hypervolume_history", "fixed_box", "objective_bounds", "normalise", "minimization_matrix", "resolve_directions",
]
