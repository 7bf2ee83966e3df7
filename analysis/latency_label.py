"""How a run's latency was obtained, in the words its report prints.

`latency_ms` is a property of a device: a number predicted from a table
built on one machine means something else than one timed in the trials of
another.  `search.run` records the source in run.json (`latency_source`:
"table <device>" or "measured on <device>, isolated"); the report puts it on
every latency axis and in the header.  Runs written before the source was
recorded say so instead of pretending to know.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from record.objectives import OBJECTIVES

UNKNOWN = "source not recorded"


def latency_source(meta: Mapping[str, Any]) -> str:
    """run.json's `latency_source`, or a note that the run predates it."""
    return str(meta.get("latency_source") or UNKNOWN)


def latency_axis_label(metas: Sequence[Mapping[str, Any]]) -> str:
    """Axis title for latency_ms of one run or several compared ones.

    One source (or several runs sharing it): "latency_ms (batch 1, table cpu
    AMD EPYC, 1 thread)"; compared runs with different sources list them all.
    """
    sources = list(dict.fromkeys(latency_source(m) for m in metas))
    if not sources:
        return OBJECTIVES["latency_ms"].label
    detail = sources[0] if len(sources) == 1 else "sources differ: " + " | ".join(sources)
    return f"latency_ms (batch 1, {detail})"
