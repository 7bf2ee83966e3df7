"""The latency table's document: its format and version, the errors a table raises, and the structural check
every table passes before it is used (the layout is in the package docstring)."""
from __future__ import annotations

import math
from typing import Any, Sequence

from cli_kit import UserError
from space.config import BACKBONE_NAMES

from ..backends import BACKENDS

PROG = "runtime.latency_table"
TABLE_FORMAT = "ghostnas-latency-table"
TABLE_VERSION = 1
OVERHEAD_METHOD = "median over the presets of (whole network measured - sum of its blocks)"
# What an existing table must share with a new build for its entries to be kept.
COMPATIBLE = ("backbone", "torch", "batch_size", "input_size", "num_classes", "clock")


class LatencyTableError(UserError):
    """A latency table that cannot be used: malformed, foreign, built with another torch."""


class MissingEntriesError(LatencyTableError):
    """The table lacks blocks an architecture needs; `keys` lists them."""

    def __init__(self, message: str, keys: Sequence[str]) -> None:
        super().__init__(message)
        self.keys = list(keys)


def _fail(path: Any, what: str) -> LatencyTableError:
    return LatencyTableError(f"latency table {path} is malformed: {what}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)



def check_document(data: Any, where: Any) -> None:
    """Raise LatencyTableError naming the first structural problem of a table document; fill defaults."""
    if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
        raise LatencyTableError(f"{where} is not a latency table (no \"format\": \"{TABLE_FORMAT}\"); "
                                f"build one with python -m {PROG} -o FILE")
    if data.get("version") != TABLE_VERSION:
        raise LatencyTableError(f"latency table {where} has version {data.get('version')!r}; "
                                f"this tool reads version {TABLE_VERSION}: rebuild it")
    if data.get("backbone") not in BACKBONE_NAMES:
        raise _fail(where, f"\"backbone\" must be one of {', '.join(BACKBONE_NAMES)}")
    device = data.get("device")
    if not isinstance(device, dict) or not isinstance(device.get("label"), str) \
            or device.get("type") not in ("cpu", "cuda"):
        raise _fail(where, "\"device\" must be an object with \"type\" (cpu or cuda) and \"label\"")
    if data.get("clock") not in ("thread", "wall"):
        raise _fail(where, "\"clock\" must be \"thread\" or \"wall\"")
    backend = data.get("backend")
    if backend is not None and (not isinstance(backend, dict) or backend.get("name") not in BACKENDS
                                or not isinstance(backend.get("version"), str)):
        raise _fail(where, f"\"backend\" must be an object with \"name\" ({' or '.join(BACKENDS)}) and "
                           "\"version\"")
    if not isinstance(data.get("torch"), str):
        raise _fail(where, "\"torch\" (the torch version) is missing")
    for name in ("batch_size", "input_size", "num_classes"):
        if not isinstance(data.get(name), int) or isinstance(data.get(name), bool) or data[name] < 1:
            raise _fail(where, f"\"{name}\" must be a positive integer")
    entries = data.get("entries")
    if not isinstance(entries, dict):
        raise _fail(where, "\"entries\" must be an object of block key -> timing")
    for key, entry in entries.items():
        if not isinstance(entry, dict) or not _number(entry.get("median_ms")) or entry["median_ms"] < 0:
            raise _fail(where, f"entry {key!r} has no non-negative \"median_ms\"")
    overhead = data.get("overhead")
    if overhead is not None and (not isinstance(overhead, dict) or not _number(overhead.get("constant_ms"))):
        raise _fail(where, "\"overhead\" must be null or an object with a number \"constant_ms\"")
    data.setdefault("menus", [])

