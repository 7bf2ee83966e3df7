"""The objective vocabulary: names, directions, labels — defined once.

Every package spells directions the same way (Optuna's "maximize" /
"minimize"); Ray Tune's "max" / "min" is derived here and nowhere else.
Adding an objective means adding one `Objective` below and computing it in
the trainable: the trials table, the loader, progress lines and the report
all read this table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

from cli_kit import UserError

Direction = Literal["maximize", "minimize"]
DIRECTIONS: tuple[Direction, ...] = ("minimize", "maximize")
_SPELLINGS = {"maximize": "maximize", "max": "maximize", "minimize": "minimize", "min": "minimize"}


@dataclass(frozen=True)
class Objective:
    """One thing a search can optimise, with how to read and show it."""

    name: str
    direction: Direction
    label: str  # axis title in reports
    integer: bool = False  # counted (MACs, params) rather than measured
    fmt: str = ".4f"  # how progress lines and tables print it

    def show(self, value: float) -> str:
        if self.integer:
            return f"{value / 1e6:.2f}M"
        return format(value, self.fmt)


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("val_acc", "maximize", "val_acc (validation accuracy)"),
    Objective("macs", "minimize", "macs (multiply-accumulates, 32×32 input)", integer=True),
    Objective("params", "minimize", "params", integer=True),
    Objective("latency_ms", "minimize", "latency_ms (batch 1)", fmt=".3f"),
)}
DEFAULT_OBJECTIVES: tuple[str, ...] = ("val_acc", "macs", "latency_ms")


def check_objectives(objectives: Iterable[str]) -> list[str]:
    """Validate objective names; ValueError lists the allowed ones (callers add the flag or file)."""
    objectives = list(objectives)
    if not objectives:
        raise ValueError("need at least one objective; choose from " + ", ".join(OBJECTIVES))
    for o in objectives:
        if o not in OBJECTIVES:
            raise ValueError(f"unknown objective {o!r}; choose from {', '.join(OBJECTIVES)}")
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"objective listed twice: {','.join(objectives)}")
    return objectives


def cost_objectives(objectives: Sequence[str]) -> list[str]:
    """The objectives other than val_acc (all minimised in the vocabulary): what "cheaper" is judged on."""
    return [o for o in objectives if o != "val_acc"]


def parse_objectives(values: str | Sequence[str] | None) -> list[str] | None:
    """The `--objectives` flag of every command: `val_acc,macs` or `val_acc macs`; None when not given."""
    if values is None:
        return None
    names = [n.strip() for v in ([values] if isinstance(values, str) else values) for n in v.split(",") if n.strip()]
    try:
        return check_objectives(names)
    except ValueError as exc:
        raise UserError(f"--objectives: {exc}") from None


def as_direction(text: str) -> Direction:
    """The one direction type from any accepted spelling ("max", "maximize", ...)."""
    try:
        return _SPELLINGS[str(text).lower()]  # type: ignore[return-value]
    except KeyError:
        raise ValueError(f"unknown direction {text!r}; choose from {', '.join(DIRECTIONS)}") from None


def directions_of(objectives: Sequence[str], directions: Sequence[str] | None = None) -> list[Direction]:
    """Directions for `objectives`: given ones validated, else the vocabulary's."""
    if directions is None:
        return [OBJECTIVES[o].direction for o in check_objectives(objectives)]
    if len(directions) != len(objectives):
        raise ValueError(f"{len(objectives)} objectives but {len(directions)} directions")
    return [as_direction(d) for d in directions]


def ray_mode(direction: str) -> str:
    """Ray Tune's spelling ("max" / "min") of a direction."""
    return "max" if as_direction(direction) == "maximize" else "min"


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[Direction]) -> bool:
    """a is at least as good as b everywhere and better somewhere (identical points never dominate)."""
    better = False
    for x, y, d in zip(a, b, directions):
        if d == "maximize":
            x, y = -x, -y
        if x > y:
            return False
        better = better or x < y
    return better
