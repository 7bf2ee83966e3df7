"""Batch-1 inference latency: the cost a deployed model pays per image.

MACs do not tell the whole story (attention and depthwise convolutions are
memory-bound), so the search measures wall time too: median of repeated runs
after warm-up, with the spread reported so noisy numbers can be spotted, in
the runtime the network is deployed with (`runtime.backends`).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch

from .backends import runner
from host.device import LAYOUT

from .timing import Protocol, clock_for, run_protocol


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p10_ms: float
    p90_ms: float
    ci_low_ms: float  # 95 % interval of the median (runtime.timing.median_interval)
    ci_high_ms: float
    n: int  # timed passes
    device: str
    threads: int
    layout: str = LAYOUT
    backend: str = "torch"  # runtime.backends: the runtime that ran the network
    clock: str = "wall"  # "thread": CPU time of the timing thread (one CPU thread; runtime.timing.clock_for)


def measure_latency(model: torch.nn.Module, device: torch.device | str = "cpu", batch_size: int = 1,
                    input_size: int = 32, threads: int | None = None, warmup: int = 10,
                    repeats: int = 50, layout: str = LAYOUT, backend: str = "torch",
                    name: str = "network", alone: Callable[[], ContextManager] | None = None) -> Latency:
    """Time `repeats` forward passes in `backend` (`runtime.backends`; torch in `layout`, a deployment's);
    the model's mode and thread count are restored.  onnxruntime exports and checks the model first
    (ExportError names `name`).  `alone()`, when given, is entered after the export and held while timing
    (the node slot's exclusive hold: a trial's export does not keep the other trials waiting).

    The loop is the latency table's (`runtime.timing.run_protocol`) with a fixed count: `warmup` passes,
    then exactly `repeats` timed ones, so a search spends the same on every trial."""
    if batch_size != 1:
        raise ValueError("latency is measured at batch 1 (what one image costs a deployed model)")
    device = torch.device(device)
    threads = threads or torch.get_num_threads()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    # One CPU thread: the thread's CPU time, which leaves out what other processes take (runtime.timing).
    clock = clock_for(device, threads)
    fixed = Protocol(warmup=warmup, warmup_s=0.0, min_repeats=repeats, max_repeats=repeats, check_every=repeats,
                     max_s=math.inf)
    with runner(model, (3, input_size, input_size), backend=backend, device=device, threads=threads,
                layout=layout, name=name, alone=alone) as call, (alone() if alone is not None else contextlib.nullcontext()):
        timing = run_protocol(call, fixed, clock, sync)
    return Latency(timing.median_ms, timing.p10_ms, timing.p90_ms, timing.ci_low_ms, timing.ci_high_ms, timing.n,
                   str(device), threads, layout if backend == "torch" else "onnx", backend, clock)
