"""The ledger: what this search knows about each architecture, kept in memory.

One owner (the search driver) and three readers: the searcher asks whether an
architecture was seen (to skip duplicates and tell the sampler its known
result), the table writer records finished trials, the progress line and the
summary read the Pareto front.  The front is updated incrementally from the
results as they arrive, so no progress line re-reads `trials.csv`; a damaged
table can no longer stop a search that already recorded its trials.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from record.objectives import Direction, dominates
from record.rundir import TRAINED_STATUSES

PENDING = "pending"


@dataclass
class Entry:
    """One architecture: its status and, when ok, its objective values."""

    status: str  # a trials-table status, or "pending" while a trainer has it
    values: tuple[float, ...] | None = None
    row: dict[str, str] | None = None  # its trials-table row once finished


@dataclass
class Ledger:
    objectives: list[str]
    directions: list[Direction]
    entries: dict[str, Entry] = field(default_factory=dict)
    rows: list[dict[str, str]] = field(default_factory=list)
    front: list[str] = field(default_factory=list)  # keys of the current Pareto front (ok trials)

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, str]], objectives: Sequence[str],
                  directions: Sequence[Direction]) -> "Ledger":
        ledger = cls(list(objectives), list(directions))
        for row in rows:
            ledger.record(row)
        return ledger

    # -- queries -----------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def values(self, key: str) -> list[float] | None:
        entry = self.entries.get(key)
        return list(entry.values) if entry is not None and entry.values is not None else None

    @property
    def trained(self) -> int:
        return sum(1 for r in self.rows if r["status"] in TRAINED_STATUSES)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r["status"] in TRAINED_STATUSES and r["status"] != "ok")

    def front_rows(self) -> list[dict[str, str]]:
        return [self.entries[k].row for k in self.front]  # type: ignore[misc]

    # -- updates -----------------------------------------------------------
    def mark(self, key: str, status: str) -> None:
        """A status without a row yet: "pending" (handed to a trainer) or "infeasible"."""
        if key not in self.entries or self.entries[key].row is None:
            self.entries[key] = Entry(status)

    def record(self, row: dict[str, str]) -> None:
        """A finished trial's table row: remember it and move the front."""
        values = None
        if row["status"] == "ok":
            values = tuple(float(row[o]) for o in self.objectives)
        self.entries[row["key"]] = Entry(row["status"], values, row)
        self.rows.append(row)
        if values is not None:
            self._add_to_front(row["key"], values)

    def _add_to_front(self, key: str, values: tuple[float, ...]) -> None:
        members = [(k, self.entries[k].values) for k in self.front]
        if any(dominates(v, values, self.directions) for _, v in members):  # type: ignore[arg-type]
            return
        self.front = [k for k, v in members if not dominates(values, v, self.directions)] + [key]  # type: ignore[arg-type]
