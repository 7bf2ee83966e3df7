"""Does a mobile runtime order the networks differently? ExecuTorch (XNNPACK) against ONNX Runtime, fp32 and int8.

    pip install -e '.[mobile]'      # executorch (its XNNPACK backend): not a dependency of the service
    python benchmarks/executorch_order.py [--archs 12] [--rounds 5] [--seed 0] [--out FILE]

ExecuTorch is the PyTorch runtime for Android and iOS; XNNPACK is its CPU
backend there.  The four GhostNet presets and `--archs` seeded menu networks
(`benchmarks/latency_table.py`'s sample) are each run four ways on one thread
at batch 1:

* `ort-fp32`: the checked ONNX export in ONNX Runtime (`runtime.backends`);
* `ort-int8`: that export quantized as shipped (`runtime.quantize.int8_session`);
* `et-fp32`: `torch.export` lowered to XNNPACK (`to_edge_transform_and_lower`);
* `et-int8`: PT2E static quantization with XNNPACK's quantizer (per-channel
  symmetric int8, calibrated on the same 8 seeded inputs) lowered the same way.

Every network's ExecuTorch output is checked against PyTorch's (fp32: max
abs difference; int8: the top-1 of 8 inputs is reported, as quantization
changes logits).  Timing: interleaved rounds (each round visits the networks
in a fresh order and times the four back to back, order alternating), a
round's figure the median of `--runs` timed calls of the calling thread's CPU
time after a warm-up, ExecuTorch's threadpool reset to one thread.  Printed
per network and runtime: median of round medians and CV over rounds; then
Kendall τ between every pair of runtimes with bootstrap 95 % intervals.  The
question it answers (issue #37): if τ(et, ort) is clearly below τ between
two sessions of one runtime, ExecuTorch becomes a latency backend; if not,
the docs say so with these figures.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from analysis.rank import bootstrap_interval, kendall_tau  # noqa: E402
from latency_table import load_average, sample_archs  # noqa: E402
from runtime.onnx_export import export_checked  # noqa: E402
from runtime.quantize import int8_session, latency_calibration  # noqa: E402
from space import SearchSpace, build_model, presets_for  # noqa: E402

RUNTIMES = ("ort-fp32", "ort-int8", "et-fp32", "et-int8")


def et_method(model: torch.nn.Module, example: torch.Tensor, calibration: np.ndarray | None):
    """An ExecuTorch XNNPACK method of `model` (fp32, or int8 when `calibration` is given) and its lowering seconds."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    started = time.perf_counter()
    exported = torch.export.export(model, (example,))
    if calibration is not None:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                              get_symmetric_quantization_config)
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        prepared = prepare_pt2e(exported.module(), quantizer)
        for x in calibration:
            prepared(torch.from_numpy(x[None]))
        exported = torch.export.export(convert_pt2e(prepared), (example,))
    buffer = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    program = Runtime.get().load_program(buffer)
    method = program.load_method("forward")
    method.keep = (program, buffer)  # a method reads its program's memory: both live as long as it does
    return method, time.perf_counter() - started


def round_median(call, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.thread_time()
        call()
        times.append(time.thread_time() - start)
    return statistics.median(times) * 1e3


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", type=int, default=12)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=50, help="timed calls per network, runtime and round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--networks", type=int, default=None, help="only the first N networks (a quick check of the script)")
    args = p.parse_args()
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    _unsafe_reset_threadpool(1)
    torch.set_num_threads(1)
    started = time.perf_counter()
    print(f"load average at start: {load_average()}", flush=True)
    presets = presets_for("ghostnet")
    archs = list(presets.values()) + [a for a in sample_archs(SearchSpace(), args.archs, args.seed)
                                      if a not in presets.values()]
    names = list(presets) + [f"random-{i}" for i in range(len(archs) - len(presets))]
    archs, names = archs[:args.networks], names[:args.networks]
    calib = latency_calibration((3, 32, 32))
    example = torch.from_numpy(calib[:1].copy())
    calls: dict[str, list] = {r: [] for r in RUNTIMES}
    for name, arch in zip(names, archs):
        torch.manual_seed(0)
        model = build_model(arch).eval()
        with torch.no_grad():
            expected = model(example)
            expected_top1 = [int(model(torch.from_numpy(x[None])).argmax()) for x in calib]
        data, fp32, _ = export_checked(model, (3, 32, 32), name=name)
        chosen = int8_session(data, calib, name=name)
        feed = {"input": calib[:1]}
        calls["ort-fp32"].append(lambda s=fp32: s.run(None, feed))
        calls["ort-int8"].append(lambda s=chosen.session: s.run(None, feed))
        et32, s32 = et_method(model, example, None)
        et8, s8 = et_method(model, example, calib)
        diff = float((et32.execute([example])[0] - expected).abs().max())
        agree = np.mean([int(et8.execute([torch.from_numpy(x[None])])[0].argmax()) == t
                         for x, t in zip(calib, expected_top1)])
        calls["et-fp32"].append(lambda m=et32: m.execute([example]))
        calls["et-int8"].append(lambda m=et8: m.execute([example]))
        print(f"{name}: ort-int8 plan {chosen.plan}; et-fp32 lowered in {s32:.0f} s, max abs difference {diff:.1e}; "
              f"et-int8 lowered in {s8:.0f} s, top-1 as fp32 on {100 * agree:.0f} % of 8 inputs", flush=True)
    rounds = {r: [[] for _ in names] for r in RUNTIMES}
    rng = random.Random(args.seed)
    for i in range(len(names)):
        for r in RUNTIMES:
            round_median(calls[r][i], 10)  # warm-up
    for k in range(args.rounds):
        order = list(range(len(names)))
        rng.shuffle(order)
        for i in order:
            for r in (RUNTIMES if (k + i) % 2 == 0 else RUNTIMES[::-1]):
                rounds[r][i].append(round_median(calls[r][i], args.runs))
        print(f"round {k + 1}/{args.rounds} done, load average {load_average()}", file=sys.stderr, flush=True)
    med = {r: [statistics.median(x) for x in rounds[r]] for r in RUNTIMES}
    cv = {r: [statistics.pstdev(x) / statistics.fmean(x) for x in rounds[r]] for r in RUNTIMES}
    n_presets = sum(name in presets for name in names)
    print(f"\n{len(names)} networks ({n_presets} presets + {len(names) - n_presets} seeded, seed {args.seed}), "
          f"{args.rounds} interleaved rounds of {args.runs} calls, batch 1, 1 thread, thread CPU time\n")
    print("| network | " + " | ".join(f"{r} ms | CV" for r in RUNTIMES) + " |")
    print("|---|" + "---|---|" * len(RUNTIMES))
    for i, name in enumerate(names):
        print(f"| {name} | " + " | ".join(f"{med[r][i]:.2f} | {cv[r][i]:.1%}" for r in RUNTIMES) + " |")
    print()
    for i, a in enumerate(RUNTIMES):
        for b in RUNTIMES[i + 1:]:
            lo, hi = bootstrap_interval(kendall_tau, med[a], med[b], n_boot=2000, seed=args.seed)
            ratio = statistics.median(x / y for x, y in zip(med[b], med[a]))
            print(f"Kendall tau({a}, {b}) = {kendall_tau(med[a], med[b]):.2f} [95% bootstrap CI {lo:.2f}, {hi:.2f}]; "
                  f"median {b} / {a} {ratio:.2f}x")
    print(f"load average at end: {load_average()}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
