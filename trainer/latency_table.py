"""Per-block latency table: measure every block once, in isolation, and predict networks by summing.

Timing a whole network inside a search trial measures the machine's load as
much as the network: the same architecture took 27.3 ms in one search and
47.6 ms in another, because other trials shared the cores.  Following FBNet,
Once-for-All's lookup table and nn-Meter, this module times every distinct
block the search menu can produce once, on its own input shape, with a
fixed protocol (`trainer.timing`), on the target device — and predicts a
network as the sum of its blocks plus a constant per table (the framework
overhead of running the blocks as one network: fitted on the four presets,
timed whole, when the table is built).

    python -m trainer.latency_table -o table.json [--device cpu] [--threads 1] [--latency-backend onnxruntime] \\
        [--kernel-sets 3-5-7,5-7-11,7-11-21] [--ratios 2,3,4] [--width 1.0] [--dw-size 3]
    python -m trainer.latency_table export-blocks DIR [menu flags]   # for a device without PyTorch

A table times one runtime, its backend (`trainer.backends`: ONNX Runtime by
default on the CPU, where each block is exported, checked and timed cold;
PyTorch eager with `--latency-backend torch`), and records it with the
runtime's version and threads; a run of the other backend refuses it.
`export-blocks` writes the blocks as ONNX files with a script that times
them on a device that has only onnxruntime and numpy (`trainer.block_export`).

Blocks are those of `space.blocks`: the stem, each bottleneck position with
MCA on/off (one entry per distinct canonical key, so positions and kernel
sets that build identical modules share one), the head — for every kernel
set x ratio of the menu, plus the presets' blocks.  Re-running with the same
`-o` keeps every measured entry (each entry is written atomically as soon as
it is measured) and measures only what is missing, so an interrupted build
continues and a wider menu extends a table.

Table format (JSON)::

    {"format": "ghostnas-latency-table", "version": 1, "backbone": "ghostnet",
     "device": {"type": "cpu", "name": "AMD EPYC", "threads": 1, "label": "cpu AMD EPYC, 1 thread", ...},
     "backend": {"name": "onnxruntime", "version": "1.32.0", "threads": 1, "opset": 18,
                 "label": "onnxruntime 1.32.0, 1 thread", ...},   # absent in older tables: torch
     "torch": "2.14.1", "batch_size": 1, "input_size": 32, "num_classes": 10,
     "clock": "thread",   # CPU time of the timing thread (1 CPU thread), else "wall" (trainer.timing)
     "protocol": {"warmup": 10, "min_repeats": 30, "rel_ci": 0.03, ...},
     "menus": [{"kernel_sets": [[3, 5, 7], ...], "ratios": [2, 3, 4], "width": 1.0, "dw_size": 3}],
     "entries": {"<block key>": {"kind": "unit", "index": 5, "input_shape": [40, 8, 8], "params": 61234,
                                 "median_ms": 1.02, "ci_low_ms": 1.0, "ci_high_ms": 1.04,
                                 "p10_ms": 0.98, "p90_ms": 1.2, "n": 60, "converged": true,
                                 "clock": "thread"}, ...},
     "overhead": {"constant_ms": 0.11, "method": "...",
                  "fit": [{"preset": "cnn", "measured_ms": 6.3, "blocks_ms": 6.2, "residual_ms": 0.1}, ...]}}
"""
from __future__ import annotations

import functools

import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TextIO

import torch

from space import ArchConfig, SearchSpace, build_model, count_params, get_backbone, presets_for
from space.blocks import block_keys, menu_configs, network_blocks
from cli_kit import Parser, UserError, run_main
from space.config import BACKBONE_NAMES, DEFAULT_BACKBONE, format_kernels
from space.search_space import DEFAULT_KERNEL_SETS, DEFAULT_RATIOS, parse_ints, parse_kernel_sets

from .backends import BACKENDS, LEGACY_BACKEND, backend_label, check_backend, default_backend, describe_backend, \
    time_network
from .device import resolve_device
from .files import temp_path, write_atomic
from .timing import LAYOUT, Protocol, clock_for, describe_device

PROG = "trainer.latency_table"
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
    def new(cls, device: dict[str, Any], *, backbone: str = DEFAULT_BACKBONE, batch_size: int = 1,
            input_size: int = 32, num_classes: int = 10, protocol: Protocol = Protocol(), clock: str = "wall",
            path: Path | None = None, backend: dict[str, Any] | None = None) -> "LatencyTable":
        backend = backend or describe_backend(LEGACY_BACKEND, device.get("threads"))
        return cls({
            "format": TABLE_FORMAT, "version": TABLE_VERSION, "backbone": backbone, "device": device,
            "backend": backend, "torch": torch.__version__,
            "layout": LAYOUT if backend["name"] == "torch" else "onnx",
            "batch_size": batch_size, "input_size": input_size, "num_classes": num_classes, "clock": clock,
            "protocol": protocol.to_dict(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "menus": [], "entries": {}, "overhead": None,
        }, path)

    @classmethod
    def from_dict(cls, data: Any, path: Path | None = None) -> "LatencyTable":
        """Validate the document's structure; LatencyTableError names the first problem."""
        where = path if path is not None else "(in memory)"
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


# --------------------------------------------------------------------- building


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


def table_configs(space: SearchSpace) -> list[ArchConfig]:
    """Architectures whose blocks the table holds: the menu's (see `menu_configs`) and the backbone's presets."""
    return [*menu_configs(space), *presets_for(space.backbone).values()]


def open_for_build(path: Path, device: dict[str, Any], *, backbone: str, batch_size: int, input_size: int,
                   num_classes: int, protocol: Protocol, backend: str = LEGACY_BACKEND) -> LatencyTable:
    """The table at `path` to extend, or a new one; a table of another device/torch/shape/backend is refused."""
    clock = clock_for(device["type"], device["threads"], protocol.clock)
    fresh = LatencyTable.new(device, backbone=backbone, batch_size=batch_size, input_size=input_size,
                             num_classes=num_classes, protocol=protocol, clock=clock, path=path,
                             backend=describe_backend(backend, device["threads"] or 1))
    if not path.exists():
        return fresh
    old = LatencyTable.load(path)
    if old.backend != backend or (old.backend == "onnxruntime" and old.backend_label != fresh.backend_label):
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
    each entry.  `backend` (`trainer.backends`; default: the device's) is the runtime the blocks are timed in.
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
                           cold=table.backend == "onnxruntime")
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


# ------------------------------------------------------------------------- CLI


def build_parser() -> Parser:
    p = Parser(prog=f"python -m {PROG}",
               description="Measure every block the search menu can produce, in isolation, into a latency "
                           "table (JSON) that search.run --latency-table predicts latency_ms from.")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="table to write; an existing table for the same device is extended (resume)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto: the target device (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of the runtime while timing (default 1)")
    p.add_argument("--latency-backend", default=None, metavar="NAME",
                   help=f"runtime the blocks are timed in: {' or '.join(BACKENDS)} (default onnxruntime on the CPU, "
                        "torch on CUDA)")
    p.add_argument("--kernel-sets", default=None, help=f"MCA kernel-scale menu (default {DEFAULT_KERNEL_SETS})")
    p.add_argument("--ratios", default=None, help=f"ghost ratio menu (default {DEFAULT_RATIOS})")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier of the menu (default 1.0)")
    p.add_argument("--dw-size", type=int, default=3, help="cheap-op kernel d of the menu (default 3)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help=f"network whose blocks are timed: {', '.join(BACKBONE_NAMES)} (default %(default)s)")
    p.add_argument("--input", type=int, default=None, metavar="SIZE",
                   help="input resolution (default the backbone's: 32, 224 for resnet50)")
    p.add_argument("--rel-ci", type=float, default=Protocol.rel_ci,
                   help="stop timing a block when the median's 95%% interval is within ± this fraction "
                        "(default %(default)g)")
    p.add_argument("--min-repeats", type=int, default=Protocol.min_repeats, help="timed runs at least (default %(default)s)")
    p.add_argument("--max-repeats", type=int, default=Protocol.max_repeats, help="timed runs at most (default %(default)s)")
    p.add_argument("--max-seconds", type=float, default=Protocol.max_s,
                   help="timing seconds per block at most (default %(default)g)")
    p.add_argument("--refit", action="store_true", help="re-measure the presets and refit the overhead constant")
    return p


def check_writable(out: Path) -> None:
    """Refuse an output the table could never be saved to before hours of measuring (one line, exit 2)."""
    if not out.parent.is_dir():
        raise UserError(f"cannot write {out}: folder {out.parent} does not exist")
    probe = temp_path(out)  # where `save` writes before its rename
    try:
        with open(probe, "w"):
            pass
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export-blocks"]:
        from .block_export import main as export_blocks

        return export_blocks(argv[1:])
    args = build_parser().parse_args(argv)
    space, protocol, device, size = _checked(args)
    backend = check_backend(args.latency_backend or default_backend(device), device)
    out = Path(args.output)
    check_writable(out)
    bar: Progress | None = None

    def progress(done: int, total: int, key: str) -> None:
        nonlocal bar
        if total == 0:
            return
        if bar is None:
            bar = Progress(total, "blocks")
        bar.update(done, key)

    info = describe_device(device, args.threads)
    # Refuse an incompatible existing table before saying anything else (one line, exit 2).
    fresh = open_for_build(out, info, backbone=space.backbone, batch_size=1, input_size=size,
                           num_classes=get_backbone(space.backbone).num_classes, protocol=protocol, backend=backend)
    print(f"latency table {out}: {space.backbone} on {info['label']}, timed in {fresh.backend_label}, "
          f"torch {torch.__version__}, batch 1, "
          f"{size}x{size}, "
          f"menu kernels {','.join(format_kernels(k) for k in space.kernel_sets)} ratios "
          f"{','.join(map(str, space.ratios))} width {space.width:g} d {space.dw_size}", file=sys.stderr, flush=True)
    result = build_table(out, space, device=device, threads=args.threads, protocol=protocol,
                         input_size=size, refit=args.refit, progress=progress, backend=backend)
    table = result.table
    unstable = sum(1 for e in table.entries.values() if not e.get("converged", True))
    print(f"measured {result.measured} blocks, kept {result.kept}; {len(table.entries)} entries, "
          f"{unstable} without a ±{protocol.rel_ci:.0%} median interval; "
          f"overhead {table.overhead_ms:+.3f} ms{' (refitted)' if result.fitted else ''}")
    for f in table.data["overhead"]["fit"]:
        print(f"  {f['preset']:14s} measured {f['measured_ms']:8.3f} ms  blocks {f['blocks_ms']:8.3f} ms  "
              f"residual {f['residual_ms']:+.3f} ms")
    print(f"table: {out}")
    return 0


def _checked(args) -> tuple[SearchSpace, Protocol, torch.device, int]:
    """The menu, the timing protocol, the device and the input size from the flags (UserError otherwise)."""
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    try:
        space = SearchSpace(kernel_sets=parse_kernel_sets(args.kernel_sets or DEFAULT_KERNEL_SETS),
                            ratios=parse_ints(args.ratios or DEFAULT_RATIOS, "--ratios"),
                            width=args.width, dw_size=args.dw_size, backbone=args.backbone)
        protocol = Protocol(min_repeats=args.min_repeats, max_repeats=args.max_repeats, max_s=args.max_seconds,
                            rel_ci=args.rel_ci)
        device = resolve_device(args.device)
    except UserError:
        raise
    except ValueError as exc:
        raise UserError(str(exc)) from None
    size = get_backbone(space.backbone).input_size if args.input is None else args.input
    if not 8 <= size <= 1024:
        raise UserError(f"--input must be in 8..1024, got {size}")
    return space, protocol, device, size


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG, interrupted="interrupted; measured entries are kept — "
                                                    "run the same command again to continue"))
