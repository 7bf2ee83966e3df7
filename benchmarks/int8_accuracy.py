"""What int8 does to a trained network's answers: every preset of the CIFAR backbones, trained, then quantized.

    python benchmarks/int8_accuracy.py [--data-dir ../shared/cifar10-subset] [--budget smoke] [--epochs 1]
                                       [--train-size 1024] [--seeds 1] [--backbones ghostnet,vgg16,resnet56]

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

from search.int8 import int8_metrics  # noqa: E402
from space import presets_for  # noqa: E402
from trainer.budget import get_budget  # noqa: E402
from trainer.data import load_cifar10  # noqa: E402
from trainer.proxy import train_proxy  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "cifar10-subset"))
    p.add_argument("--budget", default="smoke")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-size", type=int, default=1024)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--backbones", default="ghostnet,vgg16,resnet56")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = load_cifar10(args.data_dir)
    budget = dataclasses.replace(get_budget(args.budget), epochs=args.epochs, train_size=args.train_size)
    print(f"# {len(data.test_labels)} test images of {args.data_dir}; budget {budget.name}, {budget.epochs} epoch(s) of "
          f"{budget.train_size} images; int8 calibrated on 256 training images", flush=True)
    print("| preset | seed | fp32 test acc | int8 test acc | agreement | plan | seconds |")
    print("|---|---|---|---|---|---|---|")
    agreements = []
    for backbone in args.backbones.split(","):
        for name, arch in presets_for(backbone).items():
            for seed in range(args.seeds):
                start = time.perf_counter()
                seen: dict = {}
                result = train_proxy(arch, data, budget, "cpu", seed=seed, evaluate_on="test",
                                     after_training=lambda m, c, e: seen.update(int8_metrics(m, c, e, name=name)) or seen)
                if result.status != "ok":  # diverged: nothing to quantize
                    print(f"| {backbone}:{name} | {seed} | {result.status}: {result.error[:60]} | - | - | - | - |")
                    continue
                agreements.append(seen["int8_agreement"])
                print(f"| {backbone}:{name} | {seed} | {100 * result.val_acc:.2f} % | {100 * seen['test_acc_int8']:.2f} % | "
                      f"{100 * seen['int8_agreement']:.1f} % | {seen['int8_plan']} | {time.perf_counter() - start:.0f} |",
                      flush=True)
    print(f"\nagreement of int8 with fp32: {100 * min(agreements):.1f}–{100 * max(agreements):.1f} % "
          f"(median {100 * sorted(agreements)[len(agreements) // 2]:.1f} %) over {len(agreements)} trained networks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
