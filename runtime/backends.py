"""Latency backends: the runtime a network is timed in, behind one interface.

* `onnxruntime` (default on the CPU): the network exported to ONNX
  (`runtime.onnx_export`, output checked against PyTorch) and run by ONNX
  Runtime's CPU execution provider with every graph optimisation on,
  `threads` intra-op threads, one inter-op thread, batch 1 — the way it is
  deployed on an edge CPU.  At batch 1 PyTorch eager mostly times its own
  per-operator overhead: 6-9x slower than ONNX Runtime, in another order
  (docs/latency.md; `benchmarks/latency_backends.py`).
* `onnxruntime-int8`: the same checked export quantized to int8 as a phone
  or an edge CPU runs it (`runtime.quantize`: ONNX Runtime's static QDQ
  quantization, per-channel weights, what stays fp32 chosen by measurement),
  timed in the same session settings.
* `torch`: PyTorch eager in `host.device.LAYOUT`, as before this module;
  the default on CUDA, because the onnxruntime wheel this project depends on
  has only the CPU execution provider (a GPU deployment would use TensorRT or
  onnxruntime-gpu, neither a dependency), and a latency is a property of the
  device it is timed on.

Per-block tables in ONNX Runtime time each block *cold*: before every timed
run, `flush_cache` writes `FLUSH_BYTES` (4x this machine's 2 MiB L2), so the
block's weights are no longer in the core's cache — as in a whole network,
where the other blocks' ~15 MB of weights evict them between two runs.  Timed
hot, ONNX Runtime's blocks summed to 20-50 % less than the whole network
(GhostNet 1.17 vs 1.49 ms, all_mca 2.15 vs 3.4-4.3 ms: its compute is so
small that memory traffic is the cost); cold, the sum is the whole network
plus a constant (-0.56 ms on cnn, ghostnet and selective_mca: the 17 extra
`run` calls), which the table's overhead fit takes out.  Validated on a
quiet machine: 24/24 networks within ±10 % (docs/latency.md, "Validation").  Eager PyTorch's
per-operator overhead hides the effect, so torch tables time hot, as before.

`runner` gives a zero-argument callable that runs one forward pass in the
chosen runtime; `runtime.timing.run_protocol` (tables) and
`runtime.latency.measure_latency` (trials) time that callable, so both paths
support both backends with one timing code.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, ContextManager, Iterator

import numpy as np
import torch
from torch import nn

from cli_kit import UserError

from .onnx_export import OPSET, export_checked
from host.device import LAYOUT, in_layout

from .timing import Protocol, Timing, clock_for, run_protocol

BACKENDS = ("onnxruntime", "onnxruntime-int8", "torch")
ONNX_BACKENDS = ("onnxruntime", "onnxruntime-int8")  # run by ONNX Runtime: exported, checked, timed cold in tables
FLUSH_BYTES = 8 * 2**20  # written before each timed block run in an onnxruntime table (module docstring)
LEGACY_BACKEND = "torch"  # runs and tables written before backends existed were timed in PyTorch eager


def default_backend(device: torch.device | str) -> str:
    """onnxruntime on the CPU (the deployed runtime), torch on CUDA (see the module docstring)."""
    return "torch" if torch.device(device).type == "cuda" else "onnxruntime"


def runs_onnx(backend: str) -> bool:
    """Whether `backend` runs an ONNX export in ONNX Runtime (fp32 or int8)."""
    return backend in ONNX_BACKENDS


def runtime_version(backend: str) -> str:
    if runs_onnx(backend):
        import onnxruntime

        return onnxruntime.__version__
    return torch.__version__


def check_backend(backend: str, device: torch.device | str) -> str:
    """`backend` if it can time on `device`; a UserError (one line) otherwise."""
    if backend not in BACKENDS:
        raise UserError(f"--latency-backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if runs_onnx(backend) and torch.device(device).type != "cpu":
        raise UserError(f"--latency-backend {backend} times on the CPU (the installed onnxruntime has only the "
                        "CPU execution provider); use --latency-backend torch on CUDA, or a latency table")
    return backend


def backend_label(backend: str, version: str, threads: int | None) -> str:
    """"onnxruntime 1.32.0, 1 thread": what every latency number names."""
    count = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    return f"{backend} {version}{count}"


def describe_backend(backend: str, threads: int | None) -> dict[str, Any]:
    """What a table, run.json and a report record of the runtime."""
    info: dict[str, Any] = {"name": backend, "version": runtime_version(backend), "threads": threads}
    if not runs_onnx(backend):
        info.update(layout=LAYOUT)
    else:
        info.update(opset=OPSET, graph_optimization="all", exporter=f"torch {torch.__version__} (TorchScript)",
                    block_cache_flush_bytes=FLUSH_BYTES)
    if backend == "onnxruntime-int8":
        from .quantize import LATENCY_CALIBRATION, PLANS, SETTINGS

        info["quantization"] = {**SETTINGS, "plans": [p.describe() for p in PLANS], "chosen": "the fastest, timed",
                                "calibration_inputs": f"{LATENCY_CALIBRATION} seeded normal (latency only)"}
    info["label"] = backend_label(backend, info["version"], threads)
    return info


@contextlib.contextmanager
def runner(module: nn.Module, input_shape: tuple[int, ...], *, backend: str, device: torch.device | str = "cpu",
           threads: int | None = 1, layout: str = LAYOUT, name: str = "network",
           alone: Callable[[], ContextManager] | None = None) -> Iterator[Callable[[], Any]]:
    """A callable running `module` once at batch 1 in `backend`; module mode and torch threads restored after.

    onnxruntime exports and checks the module first (ExportError names `name`); onnxruntime-int8 then
    times its plans to pick one (`runtime.quantize.int8_session`), holding `alone()` while it does; the
    callable's `plan` attribute names the plan (None for the other backends).
    """
    was_training = module.training
    old_threads = torch.get_num_threads()
    try:
        if runs_onnx(backend):
            data, session, _ = export_checked(module, input_shape, name=name, threads=threads or 1)
            plan = None
            if backend == "onnxruntime-int8":
                from .quantize import int8_session, latency_calibration

                session, plan, _, _ = int8_session(data, latency_calibration(input_shape), threads=threads or 1,
                                                   name=name, alone=alone)
            feed = {session.get_inputs()[0].name: torch.randn(1, *input_shape).numpy()}

            def call() -> Any:
                return session.run(None, feed)

            call.plan = plan  # type: ignore[attr-defined]
            yield call
            return
        if threads:
            torch.set_num_threads(threads)
        device = torch.device(device)
        model, x = in_layout(module.eval().to(device), torch.randn(1, *input_shape, device=device), layout)

        def forward() -> Any:
            return model(x)

        forward.plan = None  # type: ignore[attr-defined]
        with torch.no_grad():
            yield forward
    finally:
        module.train(was_training)
        torch.set_num_threads(old_threads)


def flush_cache(buffer: np.ndarray) -> None:
    """Write every byte of `buffer`: what was in the core's caches before is evicted."""
    np.add(buffer, 1.0, out=buffer)


def time_network(module: nn.Module, input_shape: tuple[int, ...], *, backend: str,
                 device: torch.device | str = "cpu", threads: int | None = 1, protocol: Protocol = Protocol(),
                 layout: str = LAYOUT, name: str = "network", cold: bool = False) -> Timing:
    """`runtime.timing`'s protocol on one module in `backend` (tables: every block and whole network);
    `cold` flushes the cache before each timed run (onnxruntime blocks, see the module docstring)."""
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    before = functools.partial(flush_cache, np.zeros(FLUSH_BYTES // 8)) if cold else None
    with runner(module, input_shape, backend=backend, device=device, threads=threads, layout=layout,
                name=name) as call:
        return run_protocol(call, protocol, clock_for(device, threads, protocol.clock), sync, before)


__all__ = ["BACKENDS", "LEGACY_BACKEND", "ONNX_BACKENDS", "runs_onnx", "backend_label", "check_backend", "default_backend", "describe_backend", "flush_cache",
           "runner", "runtime_version", "time_network"]
