"""Multi-objective ASHA: stop trainings that are off the front early, under several objectives.

Optuna's pruners refuse multi-objective studies and every Ray Tune scheduler
takes one metric, so this is our own scheduler on Ray's public
`TrialScheduler` API (as syne-tune's MOASHA does it): at each rung (an epoch
count) a training goes on only if it ranks in the top ⌈n/η⌉ of the n
trainings that reached that rung, ranked by non-dominated sorting of
(accuracy at the rung, the run's cost objectives), crowding distance
breaking ties within a front and arrival order breaking the rest.  Costs
(MACs, params, latency) are known before the first epoch, so a cheap net with
a middling early accuracy survives where a costly one with the same accuracy
does not — a single-metric ASHA cannot see that.

The decision logic (`Rungs`) is plain Python without Ray, so the replay
benchmark runs the very same logic offline; `MOASHA` adapts it to Tune.
Decisions are asynchronous (ASHA): a training is judged against those that
reached the rung before it.  The rung records are rebuilt from the run's
learning curves on `--resume` (`Rungs.from_run`), so a killed search
continues with the same evidence.  Trainings the searcher marks as not
stoppable (baselines, repeats of front members) are recorded at the rungs —
they are peers — but always run to the end.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Sequence

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from record.objectives import Direction, cost_objectives, dominates


def fronts(points: Sequence[Sequence[float]], directions: Sequence[Direction]) -> list[list[int]]:
    """Non-dominated sorting (Deb et al.'s fast version): indices of each front, best front first."""
    n = len(points)
    dominated_by_me: list[list[int]] = [[] for _ in range(n)]
    count = [0] * n  # how many points dominate i
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j], directions):
                dominated_by_me[i].append(j)
                count[j] += 1
            elif dominates(points[j], points[i], directions):
                dominated_by_me[j].append(i)
                count[i] += 1
    out: list[list[int]] = []
    current = [i for i in range(n) if count[i] == 0]
    while current:
        out.append(current)
        nxt = []
        for i in current:
            for j in dominated_by_me[i]:
                count[j] -= 1
                if count[j] == 0:
                    nxt.append(j)
        current = sorted(nxt)
    return out


def crowding(points: Sequence[Sequence[float]], members: Sequence[int]) -> dict[int, float]:
    """NSGA-II crowding distance of each member within its front (boundary points: infinity).

    Per objective the members are sorted by value (ties by index); each inner
    member adds the gap between its neighbours, normalised by the objective's range.
    """
    dist = {i: 0.0 for i in members}
    if len(members) <= 2:
        return {i: math.inf for i in members}
    for k in range(len(points[members[0]])):
        order = sorted(members, key=lambda i: (points[i][k], i))
        lo, hi = points[order[0]][k], points[order[-1]][k]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi == lo:
            continue
        for a, b, c in zip(order, order[1:], order[2:]):
            dist[b] += (points[c][k] - points[a][k]) / (hi - lo)
    return dist


def rank_order(points: Sequence[Sequence[float]], directions: Sequence[Direction]) -> list[int]:
    """Indices best first: by front, then larger crowding distance, then lower index (earlier arrival)."""
    order: list[int] = []
    for members in fronts(points, directions):
        dist = crowding(points, members)
        order += sorted(members, key=lambda i: (-dist[i], i))
    return order


def survivors(n: int, reduction_factor: float) -> int:
    """How many of n trainings at a rung go on: the top ⌈n/η⌉ (at least one)."""
    return max(1, math.ceil(n / reduction_factor - 1e-9))


def default_rungs(epochs: int, reduction_factor: float) -> tuple[int, ...]:
    """ASHA's geometric rungs 1, η, η², ... below the full budget."""
    out, r = [], 1.0
    while round(r) < epochs:
        if not out or round(r) > out[-1]:
            out.append(int(round(r)))
        r *= reduction_factor
    return tuple(out)


@dataclass
class Rungs:
    """The rung records and the decision rule, without Ray.

    `directions` are those of a point (accuracy at the rung, then the cost
    objectives); a training is identified by any hashable id — the search uses
    (architecture key, seed), which is never trained twice.
    """

    epochs: tuple[int, ...]
    reduction_factor: float
    directions: list[Direction]
    records: dict[int, dict[Hashable, tuple[float, ...]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.epochs = tuple(sorted(set(int(e) for e in self.epochs)))
        if not self.epochs or self.epochs[0] < 1:
            raise ValueError("rungs must be positive epoch counts")
        if self.reduction_factor <= 1:
            raise ValueError(f"the reduction factor must be > 1 (got {self.reduction_factor:g})")
        for e in self.epochs:
            self.records.setdefault(e, {})

    def record(self, epoch: int, ident: Hashable, point: Sequence[float]) -> None:
        """Remember a training's point at a rung (without deciding)."""
        self.records[epoch][ident] = tuple(float(v) for v in point)

    def decide(self, epoch: int, ident: Hashable, point: Sequence[float]) -> bool:
        """Record `point` at rung `epoch` and say whether the training goes on."""
        self.record(epoch, ident, point)
        return self.goes_on(epoch, ident)

    def goes_on(self, epoch: int, ident: Hashable) -> bool:
        ids = list(self.records[epoch])
        order = rank_order([self.records[epoch][i] for i in ids], self.directions)
        position = order.index(ids.index(ident))
        return position < survivors(len(ids), self.reduction_factor)

    @classmethod
    def from_run(cls, epochs: Iterable[int], reduction_factor: float, objectives: Sequence[str],
                 directions: Sequence[Direction], trials: Sequence[dict[str, str]],
                 curves: Sequence[dict[str, str]]) -> "Rungs":
        """Rebuild the records of a run from its trials table and learning curves (resume).

        Every finished training contributes its accuracy at each rung it
        reached and its recorded costs; trainings a kill cut off have no row
        and run again.
        """
        rungs = cls(tuple(epochs), reduction_factor, point_directions(objectives, directions))
        acc: dict[tuple[str, str], dict[int, float]] = {}
        for c in curves:
            if c["val_acc"] != "":
                acc.setdefault((c["key"], c["seed"]), {})[int(c["epoch"])] = float(c["val_acc"])
        costs = cost_objectives(objectives)
        for row in trials:
            ident = (row["key"], row["seed"])
            if ident not in acc or any(row.get(o, "") == "" for o in costs):
                continue
            for e in rungs.epochs:
                if e in acc[ident]:
                    rungs.record(e, (row["key"], int(row["seed"])),
                                 (acc[ident][e], *[float(row[o]) for o in costs]))
        return rungs


def point_directions(objectives: Sequence[str], directions: Sequence[Direction]) -> list[Direction]:
    """Directions of a rung point: accuracy (maximised), then the cost objectives as the run has them."""
    by_name = dict(zip(objectives, directions))
    return ["maximize", *[by_name[o] for o in cost_objectives(objectives)]]


class MOASHA(FIFOScheduler):
    """`Rungs` as a Ray Tune scheduler: STOP at a rung when the training is outside the top ⌈n/η⌉.

    Trials run first-in first-out (Tune's FIFO order); only `on_trial_result`
    decides.  A rung at or beyond the full budget is never a decision point:
    the training is finished there anyway.
    """

    def __init__(self, rungs: Rungs, objectives: Sequence[str], max_epochs: int,
                 stoppable: Callable[[dict[str, Any]], bool] = lambda config: True) -> None:
        super().__init__()
        self.rungs = rungs
        self.costs = cost_objectives(objectives)
        self.max_epochs = max_epochs
        self.stoppable = stoppable
        self.stopped: dict[str, int] = {}  # Tune trial id -> epoch it was stopped at

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        epoch = result.get("epoch")
        if result.get("status") != "running" or epoch not in self.rungs.records or result.get("val_acc") is None:
            return TrialScheduler.CONTINUE
        ident = (result["key"], int(result["seed"]))
        point = (float(result["val_acc"]), *[float(result[o]) for o in self.costs])
        goes_on = self.rungs.decide(int(epoch), ident, point)
        if goes_on or epoch >= self.max_epochs or not self.stoppable(trial.config):
            return TrialScheduler.CONTINUE
        self.stopped[trial.trial_id] = int(epoch)
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        sizes = ", ".join(f"{e}: {len(r)}" for e, r in self.rungs.records.items())
        return f"MOASHA(eta={self.rungs.reduction_factor:g}; trainings per rung {sizes}; stopped {len(self.stopped)})"
