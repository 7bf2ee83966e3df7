"""Batch-1 inference latency: the cost a deployed model pays per image.

MACs do not tell the whole story (attention and depthwise convolutions are
memory-bound), so the search measures wall time too: median of repeated runs
after warm-up, with the spread reported so noisy numbers can be spotted.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from .timing import LAYOUT, in_layout, quantile


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p10_ms: float
    p90_ms: float
    cv: float  # coefficient of variation (std / mean) of the timed runs
    device: str
    threads: int
    layout: str = LAYOUT


@torch.inference_mode()
def measure_latency(model: torch.nn.Module, device: torch.device | str = "cpu", batch_size: int = 1,
                    input_size: int = 32, threads: int | None = None, warmup: int = 10,
                    repeats: int = 50, layout: str = LAYOUT) -> Latency:
    """Time `repeats` forward passes in eval mode and `layout` (a deployment's, `trainer.timing.LAYOUT`);
    the model's mode and thread count are restored."""
    device = torch.device(device)
    was_training = model.training
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model.eval().to(device)
        model, x = in_layout(model, torch.randn(batch_size, 3, input_size, input_size, device=device), layout)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        for _ in range(warmup):
            model(x)
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            sync()
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        model.train(was_training)
        torch.set_num_threads(old_threads)
    times.sort()
    mean = statistics.fmean(times)
    cv = statistics.pstdev(times) / mean if mean > 0 else 0.0
    return Latency(statistics.median(times), quantile(times, 0.1), quantile(times, 0.9), cv,
                   str(device), threads or old_threads, layout)
