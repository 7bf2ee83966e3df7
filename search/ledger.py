"""The ledger: what this search knows about each architecture, kept in memory.

One owner (the search driver) and three readers: the searcher asks whether an
architecture was seen (to skip duplicates, tell the sampler its known result,
and decide which architectures deserve another seed), the table writer
records finished trainings, the progress line and the summary read the
Pareto front.  Nothing here re-reads `trials.csv`; a damaged table can no
longer stop a search that already recorded its trainings.

An architecture may be trained with several seeds (baselines, repeats), one
trials-table row each.  Its objective values are the means over its ok
seeds, its `val_acc` comes with a standard error (`record.stats`: seed noise
pooled over the run plus the binomial term of the validation size), and the
front is computed on those means.  A new seed can move a mean, and so the
front, both ways: the front is then recomputed from scratch (a few hundred
architectures at most, so O(n²) dominance checks are cheap).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from record.objectives import Direction, dominates
from record.rundir import SEED_COLUMN, TRAINED_STATUSES
from record.stats import Estimate, estimates, pooled_sd

PENDING = "pending"


@dataclass
class Entry:
    """One architecture: its status, its trainings' rows, the seeds a trainer has now."""

    status: str  # "ok" once any seed is ok, else the last training's status; "pending" before any row
    values: tuple[float, ...] | None = None  # means over the ok seeds, in objective order
    row: dict[str, str] | None = None  # its first trials-table row (the architecture's columns)
    rows: list[dict[str, str]] = field(default_factory=list)
    pending: set[int] = field(default_factory=set)  # seeds handed to a trainer, not recorded yet

    @property
    def seeds(self) -> set[int]:
        """Seeds recorded (any status) or running: a seed in here is never handed out again."""
        return {int(r[SEED_COLUMN]) for r in self.rows if r.get(SEED_COLUMN, "") != ""} | self.pending

    @property
    def trainings(self) -> int:
        return sum(1 for r in self.rows if r["status"] in TRAINED_STATUSES)

    def accuracies(self) -> list[float]:
        return [float(r["val_acc"]) for r in self.rows if r["status"] == "ok"]


@dataclass
class Ledger:
    objectives: list[str]
    directions: list[Direction]
    n_val: int | None = None  # validation images per training (the binomial term); None: unknown
    run_seed: int = 0  # the seed of rows that carry none (tables from before seeds were recorded)
    entries: dict[str, Entry] = field(default_factory=dict)
    rows: list[dict[str, str]] = field(default_factory=list)
    front: list[str] = field(default_factory=list)  # keys of the current Pareto front (means of ok seeds)
    _sd: float | None = field(default=None, repr=False)
    _sd_stale: bool = field(default=True, repr=False)

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, str]], objectives: Sequence[str],
                  directions: Sequence[Direction], n_val: int | None = None, run_seed: int = 0) -> "Ledger":
        ledger = cls(list(objectives), list(directions), n_val=n_val, run_seed=run_seed)
        for row in rows:
            ledger.record(row)
        return ledger

    # -- queries -----------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def values(self, key: str) -> list[float] | None:
        """Objective values of `key` (means over its ok seeds), or None without an ok seed."""
        entry = self.entries.get(key)
        return list(entry.values) if entry is not None and entry.values is not None else None

    @property
    def trained(self) -> int:
        """Trainings handed to a trainer and finished (what --trials counts)."""
        return sum(1 for r in self.rows if r["status"] in TRAINED_STATUSES)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r["status"] in ("diverged", "failed"))

    @property
    def lost(self) -> int:
        """Trainings whose node or worker was lost past --max-restarts."""
        return sum(1 for r in self.rows if r["status"] == "lost")

    @property
    def stopped(self) -> int:
        """Trainings the early-stopping scheduler ended at a rung."""
        return sum(1 for r in self.rows if r["status"] == "stopped")

    def sampler_values(self, key: str) -> list[float] | None:
        """What the sampler is told about `key`: its means, or for a training stopped at a rung the
        values it was stopped with (its accuracy at that rung, its exact costs; `search.searcher`)."""
        values = self.values(key)
        entry = self.entries.get(key)
        if values is not None or entry is None:
            return values
        stopped = [r for r in entry.rows if r["status"] == "stopped" and r.get("val_acc", "") != ""]
        if not stopped or any(stopped[-1].get(o, "") == "" for o in self.objectives):
            return None
        return [float(stopped[-1][o]) for o in self.objectives]

    @property
    def sd_seed(self) -> float | None:
        """The run's seed noise: pooled SD of val_acc over architectures with ≥ 2 ok seeds."""
        if self._sd_stale:
            self._sd = pooled_sd(e.accuracies() for e in self.entries.values())
            self._sd_stale = False
        return self._sd

    @property
    def seeded_archs(self) -> int:
        """Architectures the seed noise is pooled over."""
        return sum(1 for e in self.entries.values() if len(e.accuracies()) >= 2)

    def estimate(self, key: str) -> Estimate | None:
        """val_acc ± se of `key` (None without an ok seed)."""
        entry = self.entries.get(key)
        if entry is None or entry.values is None:
            return None
        return estimates({key: entry.accuracies()}, self.n_val, sd_seed=self.sd_seed)[key]

    def summary_row(self, key: str) -> dict[str, object]:
        """The architecture's first row with its means, `val_acc_se` and `n_seeds`: what a summary shows."""
        entry = self.entries[key]
        out: dict[str, object] = dict(entry.row or {})
        if entry.values is not None:
            out.update(zip(self.objectives, entry.values))
        est = self.estimate(key)
        out["val_acc"] = est.mean if est else math.nan
        out["val_acc_se"] = est.se if est else math.nan
        out["n_seeds"] = est.n if est else 0
        return out

    def front_rows(self) -> list[dict[str, object]]:
        return [self.summary_row(k) for k in self.front]

    def near_front(self, key: str) -> bool:
        """On the front, or within one standard error of it.

        Within one SE: with its val_acc raised by its own standard error, no
        front member would dominate it any more.  Such an architecture could
        be on the front but for seed luck, which is where more seeds change
        the answer.
        """
        entry = self.entries.get(key)
        if entry is None or entry.values is None:
            return False
        if key in self.front:
            return True
        values = list(entry.values)
        if "val_acc" in self.objectives:
            est = self.estimate(key)
            se = est.se if est is not None and not math.isnan(est.se) else 0.0
            values[self.objectives.index("val_acc")] += se
        return not any(dominates(self.entries[k].values, values, self.directions) for k in self.front)  # type: ignore[arg-type]

    # -- updates -----------------------------------------------------------
    def mark(self, key: str, status: str) -> None:
        """A status without a row yet: "pending" (handed to a trainer) or "infeasible"."""
        if key not in self.entries or self.entries[key].row is None:
            entry = self.entries.get(key) or Entry(status)
            entry.status = status
            self.entries[key] = entry

    def mark_pending(self, key: str, seed: int) -> None:
        """Seed `seed` of `key` is with a trainer now."""
        self.mark(key, PENDING)
        self.entries[key].pending.add(seed)

    def record(self, row: dict[str, str]) -> None:
        """A finished training's table row: remember it, update the means and move the front."""
        key = row["key"]
        if row.get(SEED_COLUMN, "") == "" and row["status"] in TRAINED_STATUSES:
            row = {**row, SEED_COLUMN: str(self.run_seed)}
        entry = self.entries.get(key)
        if entry is None or entry.row is None:
            entry = Entry(row["status"], row=row, pending=entry.pending if entry else set())
            self.entries[key] = entry
        entry.rows.append(row)
        self.rows.append(row)
        if row.get(SEED_COLUMN, "") != "":
            entry.pending.discard(int(row[SEED_COLUMN]))
        ok = [r for r in entry.rows if r["status"] == "ok"]
        entry.status = "ok" if ok else row["status"]
        if row["status"] != "ok":
            return
        old = entry.values
        entry.values = tuple(sum(float(r[o]) for r in ok) / len(ok) for o in self.objectives)
        self._sd_stale = True
        if old is None:
            self._add_to_front(key, entry.values)
        else:
            self._recompute_front()

    def _add_to_front(self, key: str, values: tuple[float, ...]) -> None:
        members = [(k, self.entries[k].values) for k in self.front]
        if any(dominates(v, values, self.directions) for _, v in members):  # type: ignore[arg-type]
            return
        self.front = [k for k, v in members if not dominates(values, v, self.directions)] + [key]  # type: ignore[arg-type]

    def _recompute_front(self) -> None:
        """A mean moved: rebuild the front, keeping first-seen order."""
        ok = [(k, e.values) for k, e in self.entries.items() if e.values is not None]
        self.front = [k for k, v in ok
                      if not any(dominates(w, v, self.directions) for j, w in ok if j != k)]  # type: ignore[arg-type]
