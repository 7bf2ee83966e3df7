"""A latency table in memory: what it was timed on and in, whether a run may use it, load and atomic save,
and the prediction of a network as the sum of its blocks plus the fitted overhead."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from host.files import write_atomic
from space import ArchConfig
from space.blocks import block_keys

from ..backends import LEGACY_BACKEND, backend_label
from .format import PROG, LatencyTableError, MissingEntriesError, check_document


@dataclass
class LatencyTable:
    """A table in memory: the JSON document and where it came from."""

    data: dict[str, Any]
    path: Path | None = None

    # ------------------------------------------------------------- accessors
    @property
    def device(self) -> dict[str, Any]:
        return self.data["device"]

    @property
    def device_label(self) -> str:
        return str(self.data["device"]["label"])

    @property
    def torch_version(self) -> str:
        return str(self.data["torch"])

    @property
    def backend(self) -> str:
        """The runtime the blocks were timed in (tables from before backends existed: torch)."""
        return str((self.data.get("backend") or {}).get("name", LEGACY_BACKEND))

    @property
    def backend_label(self) -> str:
        """"onnxruntime 1.32.0, 1 thread" (a legacy table: its torch version and the device's threads)."""
        info = self.data.get("backend") or {}
        return str(info.get("label") or backend_label(self.backend, info.get("version", self.torch_version),
                                                      self.device.get("threads")))

    @property
    def backbone(self) -> str:
        return str(self.data["backbone"])

    @property
    def layout(self) -> str:
        """The memory layout the blocks were timed in (tables from before it was recorded: NCHW)."""
        return self.data.get("layout", "nchw")

    @property
    def input_size(self) -> int:
        return int(self.data["input_size"])

    @property
    def num_classes(self) -> int:
        return int(self.data["num_classes"])

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        return self.data["entries"]

    @property
    def overhead_ms(self) -> float | None:
        overhead = self.data.get("overhead")
        return None if not overhead else float(overhead["constant_ms"])

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else "(in memory)"

    def missing(self, keys: Iterable[str]) -> list[str]:
        """Keys not in the table, in first-seen order, without repeats."""
        return list(dict.fromkeys(k for k in keys if k not in self.entries))

    # ------------------------------------------------------------ validation
    def check_torch(self, version: str = torch.__version__) -> None:
        """Timings depend on the kernels torch ships: a table of another torch is refused."""
        if self.torch_version != version:
            raise LatencyTableError(
                f"latency table {self.where} was built with torch {self.torch_version}, this is torch {version}; "
                f"rebuild it: python -m {PROG} -o {self.where} --device {self.device['type']}")

    def check_backend(self, backend: str, flag: str = "--latency-backend") -> None:
        """A table times one runtime; a run of another would mix two runtimes' latencies: refused."""
        if self.backend != backend:
            raise LatencyTableError(
                f"latency table {self.where} was timed in {self.backend_label}, this run times in {backend}: "
                f"use {flag} {self.backend}, or build a table with python -m {PROG} -o FILE {flag} {backend}")

    def check_complete(self) -> None:
        if self.overhead_ms is None:
            raise LatencyTableError(
                f"latency table {self.where} has no fitted overhead (its build did not finish); "
                f"finish it: python -m {PROG} -o {self.where}")

    # ------------------------------------------------------------ persistence
    @classmethod
    def from_dict(cls, data: Any, path: Path | None = None) -> "LatencyTable":
        """Validate the document's structure (`check_document`); LatencyTableError names the first problem."""
        check_document(data, path if path is not None else "(in memory)")
        return cls(data, path)

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        """Read and validate a table file; every problem is a one-line LatencyTableError."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise LatencyTableError(f"cannot read latency table {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LatencyTableError(f"latency table {path} is not valid JSON ({getattr(exc, 'msg', exc)}, "
                                    f"line {getattr(exc, 'lineno', '?')})") from None
        return cls.from_dict(data, path)

    def save(self, path: str | Path | None = None) -> None:
        """Write atomically (temporary file, fsync, rename): a reader or a crash never sees half a table."""
        path = Path(path) if path is not None else self.path
        if path is None:
            raise ValueError("LatencyTable.save needs a path")
        write_atomic(path, _dumps(self.data))
        self.path = path


def _dumps(data: dict[str, Any]) -> str:
    """JSON with one line per setting and per entry: readable, and a diff shows which blocks changed."""
    parts = []
    for key, value in data.items():
        if key == "entries" and value:
            rows = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            parts.append(f' "entries": {{\n{rows}\n }}')
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _as_table(table: "LatencyTable | str | Path") -> LatencyTable:
    return table if isinstance(table, LatencyTable) else LatencyTable.load(table)


def predict_breakdown(arch: ArchConfig, table: "LatencyTable | str | Path") -> list[tuple[str, float]]:
    """(block key, median ms) for `arch`'s stem, 16 units and head, in forward order.

    MissingEntriesError names every key the table lacks.
    """
    table = _as_table(table)
    if arch.backbone != table.backbone:
        raise LatencyTableError(f"latency table {table.where} times {table.backbone} blocks, not {arch.backbone}")
    keys = block_keys(arch, input_size=table.input_size, num_classes=table.num_classes)
    missing = table.missing(keys)
    if missing:
        raise MissingEntriesError(
            f"latency table {table.where} lacks {len(missing)} block(s) of {arch.key}: {'; '.join(missing)}",
            missing)
    return [(k, float(table.entries[k]["median_ms"])) for k in keys]


def predict_latency(arch: ArchConfig, table: "LatencyTable | str | Path") -> float:
    """Predicted batch-1 latency (ms) of `arch` on the table's device: its blocks' medians + the overhead.

    Deterministic: the same table gives the same number for the same
    architecture, whatever else the machine is doing.
    """
    table = _as_table(table)
    table.check_complete()
    return sum(ms for _, ms in predict_breakdown(arch, table)) + float(table.overhead_ms)  # type: ignore[arg-type]
