"""A trained network as int8, the model a phone runs: its test accuracy beside fp32's.

    python -m search.int8 runs/chosen/model-folder -o best.int8.onnx --data-dir CIFAR

`int8_metrics` serves `search.confirm --int8`; the command serves one
trained network (`trainer.train`'s checkpoint or output folder).  Both export
the network (checked against PyTorch), quantize it with
`runtime.quantize.int8_session` — calibrated on un-augmented *training*
images (the ones BatchNorm was recalibrated on in a confirmation), never on
the test images it is scored on; the shipped plan is the fastest of all-int8,
MCA kept fp32 and fp32 itself — and classify the evaluation images one at a
time in ONNX Runtime, as deployed.  The int8 model's top-1 agreement with the
fp32 network on those images says what quantization changed; the command
also prints int8 − fp32 with its interval, paired by image.  Lives here, not
in `trainer` or the runtime: it needs both (DESIGN.md's layering).
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from cli_kit import Parser, UserError, run_main
from host.files import write_atomic
from runtime.export import check_writable, load_source
from runtime.onnx_export import export_checked, with_metadata
from runtime.quantize import ACCURACY_CALIBRATION, SETTINGS, Int8Choice, int8_session, top1
from space import get_backbone

PROG = "search.int8"


def _images(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], limit: int | None = None):
    xs, ys, n = [], [], 0
    for x, y in batches:
        xs.append(x.detach().float().cpu().contiguous().numpy())
        ys.append(y.cpu().numpy())
        n += len(y)
        if limit is not None and n >= limit:
            break
    images, labels = np.concatenate(xs), np.concatenate(ys)
    return (images[:limit], labels[:limit]) if limit is not None else (images, labels)


def _quantized(model: nn.Module, calibration, evaluation, *, threads: int, name: str, calibrate: int,
               alone: Callable[[], ContextManager] | None = None, metadata: dict[str, str] | None = None):
    """(int8 choice, fp32 session, export's max abs difference, calibration count, evaluation images, labels)."""
    net = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float().eval()
    calib, _ = _images(calibration, calibrate)
    images, labels = _images(evaluation)
    data, fp32, diff = export_checked(net, tuple(images.shape[1:]), name=name, threads=threads, metadata=metadata)
    return int8_session(data, calib, threads=threads, name=name, alone=alone), fp32, diff, len(calib), images, labels


def int8_metrics(model: nn.Module, calibration, evaluation, *, threads: int = 1, tta: bool = False,
                 name: str = "network", alone: Callable[[], ContextManager] | None = None) -> dict[str, Any]:
    """{"test_acc_int8", "int8_agreement", "int8_plan", "latency_ms_int8"} of the trained `model` (module
    docstring); the latency is the chosen plan's median in `int8_session`'s timing, held alone on the node;
    `tta` scores each image with its mirror, as the fp32 test accuracy of the same training was; `alone()`
    (the node slot's exclusive hold) is held while the plans are timed."""
    chosen, fp32, _, _, images, labels = _quantized(model, calibration, evaluation, threads=threads, name=name,
                                                    calibrate=ACCURACY_CALIBRATION, alone=alone)
    int8 = top1(chosen.session, images, tta)
    return {"test_acc_int8": float(np.mean(int8 == labels)),
            "int8_agreement": float(np.mean(int8 == top1(fp32, images, tta))),
            "int8_plan": chosen.plan, "latency_ms_int8": chosen.timings[chosen.plan]}


def paired_delta(fp32_right: np.ndarray, int8_right: np.ndarray) -> tuple[float, float, float]:
    """int8 − fp32 accuracy and its 95 % interval (normal, paired by image: both classify the same images)."""
    d = np.asarray(int8_right, float) - np.asarray(fp32_right, float)
    half = 1.96 * float(d.std(ddof=1)) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return float(d.mean()), float(d.mean()) - half, float(d.mean()) + half


def build_parser() -> Parser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="trainer.train's checkpoint.pt or output folder (or, untrained, an ArchConfig "
                                  "JSON or preset name: then only the latency means anything)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the int8 ONNX model to write")
    p.add_argument("--data-dir", default=None,
                   help="CIFAR-10: training images calibrate, the test batch scores (default: ./data)")
    p.add_argument("--calibration", type=int, default=ACCURACY_CALIBRATION,
                   help="training images that set the activation ranges (default %(default)s; docs/latency.md, int8)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="weights of an untrained model (default %(default)s)")
    return p


def _report(out: Path, key: str, what: str, chosen: Int8Choice, diff: float, n_calib: int, right32: np.ndarray,
            right8: np.ndarray, agree: float) -> None:
    delta, low, high = paired_delta(right32, right8)
    plans = ", ".join(f"{p} {ms:.3f} ms" for p, ms in chosen.timings.items())
    print(f"{out}: {key}, {what}; int8 plan {chosen.plan} (the fastest: {plans}), {len(chosen.model) / 1e6:.1f} MB")
    print(f"calibrated on {n_calib} un-augmented training images; fp32 export checked (max abs difference "
          f"{diff:.2e}); scored on {len(right8)} test images one at a time in ONNX Runtime, no mirror")
    print(f"test accuracy: fp32 {100 * right32.mean():.2f} %, int8 {100 * right8.mean():.2f} % (int8 - fp32 "
          f"{100 * delta:+.2f} points [{100 * low:+.2f}, {100 * high:+.2f}], 95 % CI paired by image); "
          f"top-1 agreement {100 * agree:.1f} %")
    if what.startswith("untrained"):
        print("untrained weights: these accuracies mean nothing, only the latency does; train it first (trainer.train)")


def main(argv: Sequence[str] | None = None) -> int:
    from trainer.budget import get_budget
    from trainer.data import load_cifar10
    from trainer.proxy import training_loaders

    args = build_parser().parse_args(argv)
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if args.calibration < 1:
        raise UserError(f"--calibration must be at least 1 image, got {args.calibration}")
    out = Path(args.output)
    check_writable(out)
    arch, model, what = load_source(args.source, args.seed)
    backbone = get_backbone(arch.backbone)
    if (backbone.num_classes, backbone.input_size) != (10, 32):
        raise UserError(f"{arch.backbone} is not a CIFAR-10 network; search.int8 scores on the CIFAR-10 test batch")
    data = load_cifar10(args.data_dir)
    budget = get_budget("smoke", channels_last=False)  # only its loaders' settings: no training here
    _, test, calibration = training_loaders(data, budget, 0, torch.device("cpu"), "test", bn_images=args.calibration,
                                            with_training=False)
    meta = {"arch_key": arch.key, "arch": json.dumps(arch.to_dict()), "weights": what,
            "producer": "ghostnas search.int8"}
    chosen, fp32, diff, n_calib, images, labels = _quantized(model, calibration, test, threads=args.threads,
                                                             name=arch.key, calibrate=args.calibration, metadata=meta)
    quantization = json.dumps({**SETTINGS, "plan": chosen.plan, "calibration_images": n_calib})
    try:
        write_atomic(out, with_metadata(chosen.model, {**meta, "quantization": quantization}))
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    pred32, pred8 = top1(fp32, images), top1(chosen.session, images)
    _report(out, arch.key, what, chosen, diff, n_calib, pred32 == labels, pred8 == labels,
            float(np.mean(pred32 == pred8)))
    return 0


__all__ = ["build_parser", "int8_metrics", "main", "paired_delta"]


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
