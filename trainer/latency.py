"""Batch-1 inference latency: the cost a deployed model pays per image.

MACs do not tell the whole story (attention and depthwise convolutions are
memory-bound), so the search measures wall time too: median of repeated runs
after warm-up, with the spread reported so noisy numbers can be spotted, in
the runtime the network is deployed with (`trainer.backends`).
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable, ContextManager
from dataclasses import dataclass

import torch

from .backends import runner
from .timing import LAYOUT, clock_for, quantile


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p10_ms: float
    p90_ms: float
    cv: float  # coefficient of variation (std / mean) of the timed runs
    device: str
    threads: int
    layout: str = LAYOUT
    backend: str = "torch"  # trainer.backends: the runtime that ran the network
    clock: str = "wall"  # "thread": CPU time of the timing thread (one CPU thread; trainer.timing.clock_for)


def measure_latency(model: torch.nn.Module, device: torch.device | str = "cpu", batch_size: int = 1,
                    input_size: int = 32, threads: int | None = None, warmup: int = 10,
                    repeats: int = 50, layout: str = LAYOUT, backend: str = "torch",
                    name: str = "network", alone: Callable[[], ContextManager] | None = None) -> Latency:
    """Time `repeats` forward passes in `backend` (`trainer.backends`; torch in `layout`, a deployment's);
    the model's mode and thread count are restored.  onnxruntime exports and checks the model first
    (ExportError names `name`).  `alone()`, when given, is entered after the export and held while timing
    (the node slot's exclusive hold: a trial's export does not keep the other trials waiting)."""
    if batch_size != 1:
        raise ValueError("latency is measured at batch 1 (what one image costs a deployed model)")
    device = torch.device(device)
    threads = threads or torch.get_num_threads()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    # One CPU thread: the thread's CPU time, which leaves out what other processes take (trainer.timing).
    clock = clock_for(device, threads)
    now = time.thread_time if clock == "thread" else time.perf_counter
    with runner(model, (3, input_size, input_size), backend=backend, device=device, threads=threads,
                layout=layout, name=name) as call, (alone() if alone is not None else contextlib.nullcontext()):
        for _ in range(warmup):
            call()
        sync()
        times = []
        for _ in range(repeats):
            start = now()
            call()
            sync()
            times.append((now() - start) * 1e3)
    times.sort()
    mean = statistics.fmean(times)
    cv = statistics.pstdev(times) / mean if mean > 0 else 0.0
    return Latency(statistics.median(times), quantile(times, 0.1), quantile(times, 0.9), cv,
                   str(device), threads, layout if backend == "torch" else "onnx", backend, clock)
