"""Where a search's `latency_ms` comes from: a latency table, or an isolated measurement.

* `--latency-table FILE`: every trial's `latency_ms` is predicted from a
  per-block table built on the target device (`runtime.latency_table`):
  deterministic, free of interference, and a property of the table's device,
  not of the machine that trains.  The table is checked before anything
  starts — a malformed file, another torch version, or a block the menu (or
  a baseline) needs but the table lacks is a one-line user error.
* without it, each trial measures its network as before, but inside the
  node's exclusive slot (`runtime.slot.NodeSlot`): the measurement waits for
  the epochs running on the node to end and no epoch starts until it is
  done, so no other trial of ours computes while it runs.

Either way the latency is that of one runtime, the run's latency backend
(`--latency-backend`, `runtime.backends`: ONNX Runtime by default on the
CPU, torch on CUDA); a table of another backend is refused.  run.json says
how (`latency_source`, which names the runtime, its version and threads, and
`latency_backend`), and the report labels its latency axis with it.  A run
created before backends existed was timed in PyTorch eager: it keeps torch
on --resume, and says so.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from space import ArchConfig, SearchSpace, presets_for
from space.blocks import block_keys, menu_configs
from cli_kit import UserError
from space.config import format_kernels
from runtime.backends import LEGACY_BACKEND, check_backend, default_backend, describe_backend
from runtime.latency import measure_latency
from runtime.latency_table import PROG as TABLE_PROG, LatencyTable, LatencyTableError, predict_latency
from runtime.slot import NodeSlot, SharedSlot
from host.device import LAYOUT, describe_device

SEARCH_INPUT_SIZE = 32  # the search trains and counts MACs at CIFAR's 32x32
SEARCH_CLASSES = 10


@dataclass(frozen=True)
class LatencySetup:
    """How a run gets `latency_ms`; picklable, so it travels to the trials in their context."""

    source: str  # "table <device>, <runtime>" or "measured in <runtime> on <device>, isolated"
    table: LatencyTable | None = None
    table_sha256: str | None = None
    backend: str = LEGACY_BACKEND  # runtime.backends: the runtime every latency_ms of the run is timed in
    threads: int | None = None  # the runtime's threads when measured (a table records its own)
    note: str = ""  # said at start-up: why the backend is not the default (a run from before backends)

    def run_meta(self) -> dict[str, Any]:
        """What run.json records: the source line, the backend and, with a table, its path, device and digest."""
        table = None
        if self.table is not None:
            table = {"path": str(self.table.path), "device": self.table.device_label,
                     "torch": self.table.torch_version, "sha256": self.table_sha256, "layout": self.table.layout,
                     "backend": self.table.backend_label}
        layout = self.table.layout if self.table is not None else (LAYOUT if self.backend == "torch" else "onnx")
        return {"latency_source": self.source, "latency_table": table, "latency_layout": layout,
                "latency_backend": self.backend_info()}

    def backend_info(self) -> dict[str, Any]:
        """The runtime as run.json records it: name, version, threads, label (a table's, with a table)."""
        if self.table is not None:
            return {**(self.table.data.get("backend") or {}), "name": self.table.backend,
                    "label": self.table.backend_label}
        return describe_backend(self.backend, self.threads)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _describe(config: ArchConfig) -> str:
    preset = next((name for name, cfg in presets_for(config.backbone).items() if cfg == config), None)
    if preset is not None:
        return f"baseline {preset}"
    mca = f"with MCA {format_kernels(config.kernels)}" if any(config.mca) else "without MCA"
    return f"ratio {config.ratio} {mca} (width {config.width:g}, d {config.dw_size})"


def needed_configs(space: SearchSpace, baselines: bool) -> list[ArchConfig]:
    """Architectures whose blocks cover everything the search can train: the menu and the baselines."""
    return [*menu_configs(space), *(presets_for(space.backbone).values() if baselines else ())]


def check_table(table: LatencyTable, space: SearchSpace, baselines: bool, backend: str = LEGACY_BACKEND) -> None:
    """Refuse a table the search cannot use, naming what is wrong or missing (LatencyTableError)."""
    table.check_torch()
    table.check_backend(backend)
    if table.backbone != space.backbone:
        raise LatencyTableError(f"latency table {table.where} times {table.backbone} blocks; the search is over "
                                f"--backbone {space.backbone}: build a table with --backbone {space.backbone}")
    if table.input_size != SEARCH_INPUT_SIZE or table.num_classes != SEARCH_CLASSES:
        raise LatencyTableError(
            f"latency table {table.where} was built for {table.input_size}x{table.input_size} inputs and "
            f"{table.num_classes} classes; the search needs {SEARCH_INPUT_SIZE}x{SEARCH_INPUT_SIZE} and "
            f"{SEARCH_CLASSES}")
    table.check_complete()
    gaps: dict[str, int] = {}
    first: str | None = None
    seen: set[str] = set()
    for config in needed_configs(space, baselines):
        missing = [k for k in table.missing(block_keys(config, SEARCH_INPUT_SIZE, SEARCH_CLASSES)) if k not in seen]
        seen.update(missing)
        if missing:
            gaps[_describe(config)] = len(missing)
            first = first or missing[0]
    if gaps:
        what = ", ".join(f"{name}: {n} block{'s' if n > 1 else ''}" for name, n in gaps.items())
        menu = (f"--backbone {space.backbone} --kernel-sets {','.join(space.kernel_choices)} --ratios {','.join(map(str, space.ratios))} "
                f"--width {space.width:g} --dw-size {space.dw_size}")
        raise LatencyTableError(
            f"latency table {table.where} ({table.device_label}) lacks {sum(gaps.values())} block(s) the search "
            f"needs — {what} (first: {first}); extend it: python -m {TABLE_PROG} -o {table.where} {menu}")


def _measured_source(device: str, latency_threads: int, backend: str) -> str:
    try:
        label = describe_device(device, latency_threads)["label"]
    except (RuntimeError, AssertionError):  # CUDA trials driven from a machine without CUDA
        label = f"{device} (each trial's node)"
    return f"measured in {describe_backend(backend, None)['label']} on {label}, isolated"


def run_backend(backend: str | None, device: str, stored: Mapping[str, Any] | None) -> tuple[str, str]:
    """(the run's latency backend, a note): the flag, else the device's default; a resumed run keeps its own
    (torch for a run from before backends), and a different --latency-backend for it is refused."""
    if stored is None:
        return check_backend(backend or default_backend(device), device), ""
    kept = (stored.get("latency_backend") or {}).get("name")
    note = "" if kept else (f"; run {stored.get('name', '')!r} was created before latency backends and keeps "
                            f"{LEGACY_BACKEND} (PyTorch eager)")
    kept = kept or LEGACY_BACKEND
    if backend is not None and backend != kept:
        raise UserError(f"run {stored.get('name', '')!r} times latency in {kept} (every latency of a run is of "
                        "one runtime): drop --latency-backend, or start a new --name")
    return kept, note


def setup_latency(table_path: Path | None, space: SearchSpace, *, baselines: bool, device: str,
                  latency_threads: int, stored: Mapping[str, Any] | None = None,
                  backend: str | None = None) -> LatencySetup:
    """The run's latency source, checked before the search starts (UserError, one line, otherwise).

    On --resume (`stored` = run.json) the run keeps the source it was
    created with: its table (the flag may be omitted) unchanged, or
    isolated measurement, and its backend.
    """
    backend, note = run_backend(backend, device, stored)
    if stored is not None:
        recorded = stored.get("latency_table")
        if recorded and table_path is None:
            table_path = Path(recorded["path"])
        elif recorded and table_path is not None and Path(recorded["path"]) != table_path \
                and table_path.is_file() and _sha256(table_path) != recorded.get("sha256"):
            raise UserError(f"run was created with latency table {recorded['path']}; drop --latency-table to "
                            "resume it, or start a new --name")
        elif not recorded and table_path is not None:
            raise UserError("run was created measuring latency in its trials; drop --latency-table to resume it, "
                            "or start a new --name")
    if table_path is None:
        return LatencySetup(_measured_source(device, latency_threads, backend), backend=backend,
                            threads=latency_threads, note=note)
    table = LatencyTable.load(table_path)
    check_table(table, space, baselines, backend)
    digest = _sha256(table_path)
    if stored is not None and stored.get("latency_table") and stored["latency_table"].get("sha256") != digest:
        raise UserError(f"latency table {table_path} changed since run {stored.get('name', '')!r} was created; "
                        "resuming would mix two tables' latencies: restore it or start a new --name")
    return LatencySetup(f"table {table.device_label}, {table.backend_label}", table, digest, backend, note=note)


def latency_metrics(arch: ArchConfig, model: torch.nn.Module, device: torch.device, threads: int,
                    table: LatencyTable | None, slot: SharedSlot | None = None,
                    backend: str = LEGACY_BACKEND) -> dict[str, Any]:
    """`latency_ms` (and its spread, when measured) of one trial's network.

    With a table: the prediction (no spread: it is not a measurement).
    Without: `measure_latency` in `backend` inside the node's exclusive slot
    (traded for `slot`, the trial's shared hold, when it has one).
    """
    if table is not None:
        return {"latency_ms": predict_latency(arch, table), "latency_p10_ms": None, "latency_p90_ms": None}
    alone = slot.exclusive if slot is not None else NodeSlot().exclusive
    latency = measure_latency(model, device, threads=threads, backend=backend, name=arch.key, alone=alone)
    return {"latency_ms": latency.median_ms, "latency_p10_ms": latency.p10_ms, "latency_p90_ms": latency.p90_ms}


__all__ = ["LatencySetup", "check_table", "latency_metrics", "needed_configs", "setup_latency"]
