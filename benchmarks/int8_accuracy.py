"""What int8 does to a trained network's answers: every preset of the CIFAR backbones, trained, then quantized.

    python benchmarks/int8_accuracy.py [--data-dir ../shared/cifar10-subset] [--budget smoke] [--epochs 1]
                                       [--train-size 1024] [--seeds 1] [--backbones ghostnet,vgg16,resnet56]
                                       [--calibrations 8,32,128,512]

Each preset is trained with the trainer's one loop (`trainer.proxy.train_proxy`,
the budget as `search.confirm` would, scored on the test batch), then
`search.int8.int8_metrics` exports it, quantizes it as shipped
(`runtime.quantize.int8_session`: the fastest of all-int8, MCA kept fp32 and
fp32, calibrated on 256 training images) and classifies the test images one at
a time in ONNX Runtime.  Printed per preset and seed: fp32 test accuracy (the
trainer's), int8 test accuracy, top-1 agreement of int8 with fp32, the plan
shipped; then the agreement's range.  A short training leaves networks far
from converged: read the agreement, which says how much quantization changes
the answers, more than the accuracies.

`--calibrations` measures how many calibration images are enough: each
trained network is also quantized all-int8 (one plan for every count, so
only the activation ranges differ) with the first N of the un-augmented
training images BatchNorm was recalibrated on (at most the budget's
`bn_images`), and scored the same way: int8 − fp32 with its 95 % interval
(paired by image) and the agreement, per count.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from runtime.onnx_export import export_checked, ort_session  # noqa: E402
from runtime.quantize import QUANTIZE_ALL, quantize, top1  # noqa: E402
from search.int8 import _images, int8_metrics, paired_delta  # noqa: E402
from space import presets_for  # noqa: E402
from trainer.budget import get_budget  # noqa: E402
from trainer.data import load_cifar10  # noqa: E402
from trainer.proxy import train_proxy  # noqa: E402


def by_count(model, calibration, evaluation, counts: list[int], name: str) -> list[str]:
    """Table cells per calibration count: the network quantized all-int8 with the first N calibration images."""
    net = model.to("cpu", memory_format=torch.contiguous_format).float().eval()
    images, labels = _images(evaluation)
    data, fp32, _ = export_checked(net, tuple(images.shape[1:]), name=name)
    right32 = top1(fp32, images) == labels
    rows = []
    for n in counts:
        calib, _ = _images(calibration, n)
        pred8 = top1(ort_session(quantize(data, calib, QUANTIZE_ALL, name=name)), images)
        delta, low, high = paired_delta(right32, pred8 == labels)
        rows.append(f"{len(calib)} | {100 * right32.mean():.2f} % | {100 * (pred8 == labels).mean():.2f} % | "
                    f"{100 * delta:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}] | "
                    f"{100 * (pred8 == top1(fp32, images)).mean():.1f} % |")
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "cifar10-subset"))
    p.add_argument("--budget", default="smoke")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-size", type=int, default=1024, help="training images (0: the whole training split)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--backbones", default="ghostnet,vgg16,resnet56")
    p.add_argument("--presets", default=None, help="only these preset names (comma-separated)")
    p.add_argument("--calibrations", default="", help="calibration counts to compare, e.g. 8,32,128,512")
    p.add_argument("--proxy-width", type=float, default=1.0, help="the budget's proxy width (default: full width)")
    args = p.parse_args()
    counts = [int(c) for c in args.calibrations.split(",") if c]
    torch.set_num_threads(1)
    data = load_cifar10(args.data_dir)
    budget = dataclasses.replace(get_budget(args.budget), epochs=args.epochs, train_size=args.train_size or None,
                                 proxy_width=args.proxy_width)
    if counts and max(counts) > budget.bn_images:
        p.error(f"--calibrations go up to the budget's bn_images ({budget.bn_images})")
    print(f"# {len(data.test_labels)} test images of {args.data_dir}; budget {budget.name}, {budget.epochs} epoch(s) of "
          f"{budget.train_size} images; int8 calibrated on 256 training images", flush=True)
    print("| preset | seed | fp32 test acc | int8 test acc | agreement | plan | seconds |")
    print("|---|---|---|---|---|---|---|")
    agreements, calibration_rows = [], []
    for backbone in args.backbones.split(","):
        for name, arch in presets_for(backbone).items():
            if args.presets and name not in args.presets.split(","):
                continue
            for seed in range(args.seeds):
                start = time.perf_counter()
                seen: dict = {}

                def measure(m, c, e, name=name, seen=seen):
                    seen.update(int8_metrics(m, c, e, name=name))
                    seen["calibrations"] = by_count(m, c, e, counts, name) if counts else []
                    return seen

                result = train_proxy(arch, data, budget, "cpu", seed=seed, evaluate_on="test", after_training=measure)
                if result.status != "ok":  # diverged: nothing to quantize
                    print(f"| {backbone}:{name} | {seed} | {result.status}: {result.error[:60]} | - | - | - | - |")
                    continue
                agreements.append(seen["int8_agreement"])
                print(f"| {backbone}:{name} | {seed} | {100 * result.val_acc:.2f} % | {100 * seen['test_acc_int8']:.2f} % | "
                      f"{100 * seen['int8_agreement']:.1f} % | {seen['int8_plan']} | {time.perf_counter() - start:.0f} |",
                      flush=True)
                calibration_rows.extend(f"| {backbone}:{name} | {seed} | {line}" for line in seen["calibrations"])
    if calibration_rows:
        print("\n| preset | seed | calibration images | fp32 test acc | int8 (all) test acc | int8 - fp32 [95 % CI] "
              "| agreement |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(calibration_rows))
    print(f"\nagreement of int8 with fp32: {100 * min(agreements):.1f}–{100 * max(agreements):.1f} % "
          f"(median {100 * sorted(agreements)[len(agreements) // 2]:.1f} %) over {len(agreements)} trained networks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
