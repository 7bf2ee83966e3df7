"""Building a latency table: every block of the menu measured once, in isolation and atomically saved as it is
measured (an interrupted build continues), then the overhead constant fitted on the presets timed whole."""
from __future__ import annotations

import functools
import math
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import torch

from cli_kit import UserError
from host.device import LAYOUT, describe_device, resolve_device
from space import ArchConfig, SearchSpace, build_model, count_params, get_backbone, presets_for
from space.blocks import block_keys, menu_configs, network_blocks
from space.config import DEFAULT_BACKBONE

from ..backends import LEGACY_BACKEND, check_backend, default_backend, describe_backend, runs_onnx, time_network
from ..timing import Protocol, clock_for
from .format import COMPATIBLE, OVERHEAD_METHOD, TABLE_FORMAT, TABLE_VERSION
from .table import LatencyTable


class Progress:
    """A one-line progress bar with ETA on stderr (a line every 10 s when stderr is not a terminal)."""

    def __init__(self, total: int, what: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.total, self.what, self.width = total, what, width
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.last_line = 0.0

    def update(self, done: int, note: str = "") -> None:
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (self.total - done) if done else float("nan")
        filled = int(self.width * done / self.total) if self.total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        eta_text = "?" if math.isnan(eta) else _duration(eta)
        line = f"[{bar}] {done}/{self.total} {self.what}  elapsed {_duration(elapsed)}  ETA {eta_text}"
        if self.tty:
            self.stream.write("\r" + (line + f"  {note}")[:160].ljust(160))
            if done >= self.total:
                self.stream.write("\n")
        elif done >= self.total or done == 0 or elapsed - self.last_line >= 10:
            self.stream.write(line + "\n")
            self.last_line = elapsed
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class BuildResult:
    table: LatencyTable
    measured: int  # entries measured by this call
    kept: int  # entries already in the table
    fitted: bool  # the overhead was (re)fitted by this call


def new_table(device: dict[str, Any], *, backbone: str = DEFAULT_BACKBONE, batch_size: int = 1, input_size: int = 32,
              num_classes: int = 10, protocol: Protocol = Protocol(), clock: str = "wall", path: Path | None = None,
              backend: dict[str, Any] | None = None) -> LatencyTable:
    """An empty table for a build: what its entries will be a property of (device, runtime, torch, shapes)."""
    backend = backend or describe_backend(LEGACY_BACKEND, device.get("threads"))
    return LatencyTable({
        "format": TABLE_FORMAT, "version": TABLE_VERSION, "backbone": backbone, "device": device,
        "backend": backend, "torch": torch.__version__,
        "layout": LAYOUT if backend["name"] == "torch" else "onnx",
        "batch_size": batch_size, "input_size": input_size, "num_classes": num_classes, "clock": clock,
        "protocol": protocol.to_dict(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "menus": [], "entries": {}, "overhead": None,
    }, path)


def table_configs(space: SearchSpace) -> list[ArchConfig]:
    """Architectures whose blocks the table holds: the menu's (see `menu_configs`) and the backbone's presets."""
    return [*menu_configs(space), *presets_for(space.backbone).values()]


def open_for_build(path: Path, device: dict[str, Any], *, backbone: str, batch_size: int, input_size: int,
                   num_classes: int, protocol: Protocol, backend: str = LEGACY_BACKEND) -> LatencyTable:
    """The table at `path` to extend, or a new one; a table of another device/torch/shape/backend is refused."""
    clock = clock_for(device["type"], device["threads"], protocol.clock)
    fresh = new_table(device, backbone=backbone, batch_size=batch_size, input_size=input_size,
                             num_classes=num_classes, protocol=protocol, clock=clock, path=path,
                             backend=describe_backend(backend, device["threads"] or 1))
    if not path.exists():
        return fresh
    old = LatencyTable.load(path)
    if old.backend != backend or (runs_onnx(old.backend) and old.backend_label != fresh.backend_label):
        raise UserError(f"{path} holds a latency table timed in {old.backend_label} (now {fresh.backend_label}); "
                        "its entries cannot be kept: choose another -o or remove it")
    theirs = {k: old.data.get(k) for k in COMPATIBLE}
    ours = {k: fresh.data[k] for k in COMPATIBLE}
    same_device = all(old.device.get(k) == device.get(k) for k in ("type", "name", "threads"))
    if theirs != ours or not same_device:
        diff = [f"{k} {theirs[k]!r} (now {ours[k]!r})" for k in COMPATIBLE if theirs[k] != ours[k]]
        if not same_device:
            diff.insert(0, f"device {old.device_label!r} (now {device['label']!r})")
        raise UserError(f"{path} holds a latency table for {', '.join(diff)}; "
                        "its entries cannot be kept: choose another -o or remove it")
    return old


def build_table(path: str | Path, space: SearchSpace, *, device: str | torch.device = "cpu", threads: int = 1,
                protocol: Protocol = Protocol(), batch_size: int = 1, input_size: int | None = None,
                num_classes: int | None = None, extra: Sequence[ArchConfig] = (), refit: bool = False,
                progress: Callable[[int, int, str], None] | None = None, backend: str | None = None) -> BuildResult:
    """Measure every block of `space` (and of the presets and `extra`) missing from the table at `path`.

    Each entry is saved atomically as soon as it is measured.  Then the
    overhead constant is fitted on the presets, timed whole with the same
    protocol — once per table (a wider menu adds blocks, not overhead), or
    again with `refit`.  `progress(done, total, key)` is called before and after
    each entry.  `backend` (`runtime.backends`; default: the device's) is the runtime the blocks are timed in.
    """
    path = Path(path)
    device = resolve_device(device)
    backend = default_backend(device) if backend is None else backend
    info = describe_device(device, threads)
    entry = get_backbone(space.backbone)
    input_size = entry.input_size if input_size is None else input_size
    num_classes = entry.num_classes if num_classes is None else num_classes
    table = open_for_build(path, info, backbone=space.backbone, batch_size=batch_size, input_size=input_size,
                           num_classes=num_classes, protocol=protocol, backend=check_backend(backend, device))
    configs = [*table_configs(space), *extra]
    menu = space.to_dict()
    if menu not in table.data["menus"]:
        table.data["menus"].append(menu)

    shape = {"num_classes": num_classes, "input_size": input_size}
    if batch_size != 1:
        raise ValueError("latency tables are timed at batch 1")
    timer = functools.partial(time_network, backend=table.backend, device=device, threads=threads,
                              protocol=protocol, layout=table.layout if table.backend == "torch" else LAYOUT)
    kept = len(table.entries)
    done = _measure_missing(table, path, _missing_blocks(table, configs, shape), shape, timer, progress)
    fitted = refit or table.overhead_ms is None
    if fitted:
        _fit_overhead(table, path, presets_for(space.backbone), shape, timer)
    return BuildResult(table, done, kept, fitted)


def _missing_blocks(table: LatencyTable, configs: Sequence[ArchConfig], shape: dict) -> dict[str, ArchConfig]:
    """Key -> the first config that has it, for each block the table lacks (building a model is cheap)."""
    todo: dict[str, ArchConfig] = {}
    for config in configs:
        for key in block_keys(config, **shape):
            if key not in table.entries and key not in todo:
                todo[key] = config
    return todo


def _measure_missing(table: LatencyTable, path: Path, todo: dict[str, ArchConfig], shape: dict,
                     timer: Callable, progress: Callable[[int, int, str], None] | None) -> int:
    """Time each missing block, saving the table after each; returns how many were measured."""
    done, total = 0, len(todo)
    if progress:
        progress(0, total, "")
    for config in dict.fromkeys(todo.values()):  # one model per config, blocks measured in order
        for block in network_blocks(build_model(config, **shape)):
            if block.key in table.entries or todo.get(block.key) != config:
                continue
            timing = timer(block.module, block.input_shape, name=f"block {block.key}",
                           cold=runs_onnx(table.backend))
            table.entries[block.key] = {
                "kind": block.kind, "index": block.index, "input_shape": list(block.input_shape),
                "params": count_params(block.module), **timing.to_dict(),
            }
            table.save(path)
            done += 1
            if progress:
                progress(done, total, block.key)
    return done


def _fit_overhead(table: LatencyTable, path: Path, presets: dict[str, ArchConfig], shape: dict,
                  timer: Callable) -> None:
    """The constant a whole network costs beyond its blocks: the median residual over the presets."""
    size = shape["input_size"]
    fit = []
    for name, config in presets.items():
        whole = timer(build_model(config, **shape), (3, size, size), name=f"preset {name} ({config.key})")
        blocks_ms = sum(float(table.entries[k]["median_ms"]) for k in block_keys(config, **shape))
        fit.append({"preset": name, "key": config.key, "measured_ms": round(whole.median_ms, 6),
                    "blocks_ms": round(blocks_ms, 6), "residual_ms": round(whole.median_ms - blocks_ms, 6)})
    table.data["overhead"] = {"constant_ms": round(statistics.median(f["residual_ms"] for f in fit), 6),
                              "method": OVERHEAD_METHOD, "fit": fit}
    table.data["fitted"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    table.save(path)
