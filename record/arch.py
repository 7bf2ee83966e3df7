"""ArchConfig ⇄ flat columns: the one spelling of an architecture in tables.

The trials table, the loader, the report and the benchmarks all see an
architecture as `mca_0` … `mca_{n-1}` (0/1), `kernels` ("3-5-7"), `ratio`,
`width`, `dw_size`, `backbone` — the same names the search space gives Optuna's
parameters (`space.search_space.mca_param`).
"""
from __future__ import annotations

from typing import Any, Mapping

from space import N_BLOCKS, ArchConfig
from space.config import format_kernels
from space.search_space import mca_param

ARCH_FIELDS = ("kernels", "ratio", "width", "dw_size", "backbone")
DEFAULT_BACKBONE = "ghostnet"  # tables written before backbones existed hold GhostNets


def mca_columns(n: int = N_BLOCKS) -> list[str]:
    """`mca_0` … `mca_{n-1}`: one placement bit per insertion point."""
    return [mca_param(i) for i in range(n)]


def arch_columns(n: int = N_BLOCKS) -> list[str]:
    return [*mca_columns(n), *ARCH_FIELDS]


def to_flat(arch: ArchConfig) -> dict[str, Any]:
    """The table cells of `arch` (bits as 0/1 ints, kernels as "3-5-7")."""
    cols: dict[str, Any] = {mca_param(i): int(bit) for i, bit in enumerate(arch.mca)}
    cols.update(kernels=format_kernels(arch.kernels), ratio=arch.ratio, width=arch.width, dw_size=arch.dw_size,
                backbone=arch.backbone)
    return cols


def n_mca_columns(columns: Any) -> int:
    """How many `mca_i` columns a table (its column names) holds."""
    names = set(columns)
    n = 0
    while mca_param(n) in names:
        n += 1
    return n


def from_flat(row: Mapping[str, Any]) -> ArchConfig:
    """The ArchConfig of one table row (a dict of strings, a pandas Series, ...).

    Bits may be 0/1, "0"/"1" or booleans; ValueError (naming the field) otherwise.
    """
    bits = []
    for i in range(n_mca_columns(row.keys())):
        value = row[mca_param(i)]
        if isinstance(value, str):
            value = {"0": False, "1": True, "False": False, "True": True}.get(value.strip(), value)
        elif hasattr(value, "item"):  # numpy / pandas scalars from a DataFrame row
            value = value.item()
        bits.append(value)
    return ArchConfig(mca=tuple(bits), kernels=str(row["kernels"]), ratio=_number(row["ratio"], int),
                      width=_number(row["width"], float), dw_size=_number(row["dw_size"], int),
                      backbone=str(row.get("backbone") or DEFAULT_BACKBONE))


def _number(value: Any, kind: type) -> Any:
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        return value  # ArchConfig names the field and the allowed values
