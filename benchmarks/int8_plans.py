"""Which int8 model pays? fp32 against ONNX Runtime int8 plans on every preset of the CIFAR backbones.

    python benchmarks/int8_plans.py [--rounds 5] [--runs 100] [--threads 1] [--backbones ghostnet,vgg16,resnet56]

Per preset (seeded weights: latency does not depend on their values), the
checked fp32 export and four int8 models of it, all ONNX Runtime CPU, batch
1, `--threads` threads:

* `naive`: `quantize_static` (QDQ, per-channel int8 weights, uint8
  activations) on the export as it is, no pre-processing;
* `all`: the same after `quant_pre_process` (constant folding);
* `mca-fp32`: pre-processed, every node of the MCA blocks kept fp32;
* `chosen`: what `runtime.quantize.int8_session` (the `onnxruntime-int8`
  backend) picks between `all` and `mca-fp32`, by its own quick timing.

Interleaved: each round times every model of a preset back to back
(`--runs` timed runs after warm-up, the round's median), in an order that
alternates between rounds, so load from elsewhere hits all of them.
Printed: the median over rounds of the round medians, the spread (min–max of
the round medians), each int8 model's speed-up over fp32 and whether the
chosen one is ever slower than fp32; the load average before and after.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from host.device import describe_device  # noqa: E402
from runtime.onnx_export import export_checked, ort_session  # noqa: E402
from runtime.quantize import MCA_FP32, QUANTIZE_ALL, int8_session, latency_calibration, quantize  # noqa: E402
from space import build_model, get_backbone, presets_for  # noqa: E402


def naive(fp32: bytes, calibration: np.ndarray) -> bytes:
    """quantize_static without pre-processing: what a first try gives (the issue's table)."""
    import tempfile

    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from runtime.quantize import _Reader

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "a.onnx"), os.path.join(tmp, "b.onnx")
        Path(src).write_bytes(fp32)
        logging.disable(logging.WARNING)
        try:
            quantize_static(src, dst, _Reader("input", calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        return Path(dst).read_bytes()


def round_median(session, feed, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backbones", default="ghostnet,vgg16,resnet56")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {describe_device('cpu', args.threads)['label']}, onnxruntime {ort.__version__}; "
          f"load average before {os.getloadavg()[0]:.2f}", flush=True)
    print("| preset | fp32 ms | naive | all | mca-fp32 | chosen (plan) | chosen / fp32 |")
    print("|---|---|---|---|---|---|---|")
    slower = []
    for backbone in args.backbones.split(","):
        size = get_backbone(backbone).input_size
        shape = (3, size, size)
        calib = latency_calibration(shape)
        for name, arch in presets_for(backbone).items():
            torch.manual_seed(0)
            data, fp32, _ = export_checked(build_model(arch), shape, name=name, threads=args.threads)
            models = {"fp32": fp32, "naive": ort_session(naive(data, calib), args.threads),
                      "all": ort_session(quantize(data, calib, QUANTIZE_ALL, name=name), args.threads)}
            models["mca-fp32"] = (ort_session(quantize(data, calib, MCA_FP32, name=name), args.threads)
                                  if any(arch.mca) else models["all"])
            chosen, plan, _, _ = int8_session(data, calib, threads=args.threads, name=name)
            models["chosen"] = chosen
            feed = {"input": np.random.default_rng(1).standard_normal((1, *shape)).astype(np.float32)}
            rounds: dict[str, list[float]] = {k: [] for k in models}
            for s in models.values():
                round_median(s, feed, 10)
            for r in range(args.rounds):
                for k in (list(models) if r % 2 == 0 else list(models)[::-1]):
                    rounds[k].append(round_median(models[k], feed, args.runs))
            med = {k: statistics.median(v) for k, v in rounds.items()}
            cell = {k: f"{med[k]:.2f} ({min(v):.2f}–{max(v):.2f})" for k, v in rounds.items()}
            ratio = med["chosen"] / med["fp32"]
            same = " (same model: noise)" if plan == "fp32" else ""
            if ratio > 1 and not same:
                slower.append(f"{backbone}:{name}")
            print(f"| {backbone}:{name} | {cell['fp32']} | {cell['naive']} | {cell['all']} | {cell['mca-fp32']} | "
                  f"{cell['chosen']} ({plan}) | {ratio:.2f}{same} |", flush=True)
    print(f"\nchosen int8 model slower than fp32 (plan fp32 excluded: it is the fp32 model): {', '.join(slower) or 'none'}")
    print(f"load average after {os.getloadavg()[0]:.2f}; medians over {args.rounds} interleaved rounds of "
          f"{args.runs} runs (min–max of the round medians), ONNX Runtime CPU, {args.threads} thread(s), batch 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
