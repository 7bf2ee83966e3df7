"""Per-block latency table: measure every block once, in isolation, and predict networks by summing.

Timing a whole network inside a search trial measures the machine's load as
much as the network: the same architecture took 27.3 ms in one search and
47.6 ms in another, because other trials shared the cores.  Following FBNet,
Once-for-All's lookup table and nn-Meter, this module times every distinct
block the search menu can produce once, on its own input shape, with a
fixed protocol (`runtime.timing`), on the target device — and predicts a
network as the sum of its blocks plus a constant per table (the framework
overhead of running the blocks as one network: fitted on the four presets,
timed whole, when the table is built).

    python -m runtime.latency_table -o table.json [--device cpu] [--threads 1] [--latency-backend onnxruntime] \\
        [--kernel-sets 3-5-7,5-7-11,7-11-21] [--ratios 2,3,4] [--width 1.0] [--dw-size 3]
    python -m runtime.latency_table export-blocks DIR [menu flags]   # for a device without PyTorch

A table times one runtime, its backend (`runtime.backends`: ONNX Runtime by
default on the CPU, where each block is exported, checked and timed cold;
PyTorch eager with `--latency-backend torch`), and records it with the
runtime's version and threads; a run of the other backend refuses it.
`export-blocks` writes the blocks as ONNX files with a script that times
them on a device that has only onnxruntime and numpy (`runtime.block_export`).

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
     "clock": "thread",   # CPU time of the timing thread (1 CPU thread), else "wall" (runtime.timing)
     "protocol": {"warmup": 10, "min_repeats": 30, "rel_ci": 0.03, ...},
     "menus": [{"kernel_sets": [[3, 5, 7], ...], "ratios": [2, 3, 4], "width": 1.0, "dw_size": 3}],
     "entries": {"<block key>": {"kind": "unit", "index": 5, "input_shape": [40, 8, 8], "params": 61234,
                                 "median_ms": 1.02, "ci_low_ms": 1.0, "ci_high_ms": 1.04,
                                 "p10_ms": 0.98, "p90_ms": 1.2, "n": 60, "converged": true,
                                 "clock": "thread"}, ...},
     "overhead": {"constant_ms": 0.11, "method": "...",
                  "fit": [{"preset": "cnn", "measured_ms": 6.3, "blocks_ms": 6.2, "residual_ms": 0.1}, ...]}}

The package: `format` (the document, its version and its checks), `table`
(a table in memory: accessors, compatibility checks, load and save, and the
prediction), `build` (measuring the missing blocks and fitting the overhead),
`cli` (`python -m runtime.latency_table`); `runtime.block_export` carries the
blocks to a device without torch.
"""
from __future__ import annotations

from .build import BuildResult, Progress, build_table, open_for_build, table_configs
from .format import COMPATIBLE, PROG, TABLE_FORMAT, TABLE_VERSION, LatencyTableError, MissingEntriesError
from .table import LatencyTable, predict_breakdown, predict_latency

__all__ = ["BuildResult", "COMPATIBLE", "LatencyTable", "LatencyTableError", "MissingEntriesError", "PROG", "Progress",
           "TABLE_FORMAT", "TABLE_VERSION", "build_table", "open_for_build", "predict_breakdown", "predict_latency",
           "table_configs"]
