"""`python -m space.describe`: what an architecture costs, block by block.

Users look at this before they search (where do the MACs go? what does MCA
at 1/16 resolution add?); scripts read `--json`.  Rows: the stem, one row
per MCA insertion point (GhostNet: the 16 bottlenecks; VGG-16: the 13
conv + BN + ReLU; ResNet-56 / -50: the residual blocks), each with its MCA
block if any, and the head (GhostNet: 1x1 conv to 960, pooling, 1x1 conv to
1280, classifier; the others: pooling and classifier), so the rows add up
to the totals.

    python -m space.describe --preset selective_mca
    python -m space.describe --preset ghostnet --input 224 --classes 1000 --json
    python -m space.describe --config best.json --ratio 3
    python -m space.describe --backbone resnet56 --ratio 2 --dw-size 3
    python -m space.describe --arch resnet50:ghost
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, Sequence

import torch

from .backbones import build_model
from cli_kit import Parser, UserError, run_main
from .config import BACKBONE_NAMES, DEFAULT_BACKBONE, ArchConfig, format_kernels, parse_kernels
from .cost import count_macs_by_module, count_params
from .presets import PRESETS, get_preset, load_arch, presets_for

PROG = "space.describe"
MAX_INPUT = 1024  # a describe run must stay a quick look, not an out-of-memory


def describe(config: ArchConfig, input_size: int | None = None, num_classes: int | None = None,
             stem_stride: int | None = None) -> dict[str, Any]:
    """Per-row and total params / MACs of the model built for `config`.

    Returns {"arch", "key", "backbone", "input_size", "num_classes",
    "stem_stride", "stem", "blocks": [one row per insertion point], "head",
    "total": {"params", "macs"}} where stem + blocks + head add up to total.
    Block rows carry `blocks_info` plus params, macs and the MCA block's own
    share (mca_params, mca_macs).  `input_size` / `num_classes` default to
    the backbone's (32 / 10 for the CIFAR backbones, 224 / 1000 for resnet50).
    """
    if isinstance(config, str):
        config = load_arch(config)
    # Shapes are all a count needs: on the meta device no weights are drawn and no arithmetic is
    # done, so describing ResNet-50 with MCA at 224^2 takes a blink instead of seconds.
    with torch.device("meta"):
        model = build_model(config, num_classes=num_classes, input_size=input_size, stem_stride=stem_stride)
    input_size, num_classes = model.input_size, model.num_classes
    macs = count_macs_by_module(model, input_size)
    total = {"params": count_params(model), "macs": macs.get("", 0)}

    blocks = []
    for info, unit in zip(model.blocks_info, model.blocks):
        i = info["index"]
        row = dict(info, kernels_used=list(info["kernels_used"]))
        row["params"] = count_params(unit)
        row["macs"] = macs.get(f"blocks.{i}", 0)
        row["mca_params"] = count_params(unit.mca) if unit.mca is not None else 0
        row["mca_macs"] = macs.get(f"blocks.{i}.mca", 0)
        blocks.append(row)

    stem = {"resolution": model.stem_resolution, "in_channels": 3,
            "out_channels": model.blocks_info[0]["in_channels"], "stride": model.stem_stride,
            "kernel": model.stem_kernel, "params": count_params(model.stem), "macs": macs.get("stem", 0)}
    head = {"resolution": model.final_resolution, "in_channels": model.blocks_info[-1]["out_channels"],
            "out_channels": num_classes, "kernel": model.head_kernel,
            "params": total["params"] - stem["params"] - sum(b["params"] for b in blocks),
            "macs": total["macs"] - stem["macs"] - sum(b["macs"] for b in blocks)}
    return {"arch": config.to_dict(), "key": config.key, "backbone": config.backbone, "input_size": input_size,
            "num_classes": num_classes, "stem_stride": model.stem_stride,
            "stem": stem, "blocks": blocks, "head": head, "total": total}


_COLUMNS = [  # header, width, alignment
    ("block", 5, "<"), ("res", 4, ">"), ("in", 5, ">"), ("out", 5, ">"), ("exp", 5, ">"),
    ("k", 2, ">"), ("stride", 6, ">"), ("SE", 3, ">"), ("MCA", 3, ">"), ("kernels", 8, ">"),
    ("params", 10, ">"), ("MACs", 12, ">"),
]


def _line(values: Sequence[Any], widths: Sequence[int]) -> str:
    return "  ".join(f"{str(v):{align}{width}}"
                     for v, width, (_, _, align) in zip(values, widths, _COLUMNS)).rstrip()


def format_table(report: dict[str, Any]) -> str:
    """The fixed-width text table printed by the CLI."""
    yes = lambda flag: "yes" if flag else "-"  # noqa: E731
    dash = lambda value: "-" if value is None else value  # noqa: E731  (a column the backbone lacks)
    stem, head, total = report["stem"], report["head"], report["total"]
    size = report["input_size"]
    rows = [["stem", stem["resolution"], stem["in_channels"], stem["out_channels"], "-", dash(stem["kernel"]),
             stem["stride"], "-", "-", "-", f"{stem['params']:,}", f"{stem['macs']:,}"]]
    for b in report["blocks"]:
        kernels = format_kernels(b["kernels_used"]) if b["mca"] else "-"
        rows.append([b["index"], b["resolution"], b["in_channels"], b["out_channels"], dash(b["expansion"]),
                     b["kernel"], b["stride"], yes(b["se"]), yes(b["mca"]), kernels,
                     f"{b['params']:,}", f"{b['macs']:,}"])
    rows.append(["head", head["resolution"], head["in_channels"], head["out_channels"], "-", dash(head["kernel"]),
                 "-", "-", "-", "-", f"{head['params']:,}", f"{head['macs']:,}"])
    rows.append(["total", "", "", "", "", "", "", "", "", "", f"{total['params']:,}", f"{total['macs']:,}"])
    header = [c[0] for c in _COLUMNS]
    # fixed minimum widths keep tables of different configs aligned; long values widen a column
    widths = [max(width, *(len(str(r[i])) for r in rows)) for i, (_, width, _) in enumerate(_COLUMNS)]
    lines = [
        f"arch    {report['key']}",
        f"input   {size}x{size}, {report['num_classes']} classes, stem stride {report['stem_stride']}",
        "",
        _line(header, widths),
        *(_line(r, widths) for r in rows),
    ]
    n_mca = sum(b["mca"] for b in report["blocks"])
    mca_macs = sum(b["mca_macs"] for b in report["blocks"])
    lines += ["", f"params {total['params'] / 1e6:.2f} M, MACs {total['macs'] / 1e6:.2f} M"
                  + (f" ({n_mca} MCA blocks: {mca_macs / 1e6:.2f} M MACs)" if n_mca else "")]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description="Per-block parameters and MACs of a GhostNet / Selective-MCA "
                                      "architecture (or of VGG-16, ResNet-56, ResNet-50 with Ghost modules and MCA).")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help=f"a preset of the backbone; ghostnet: {', '.join(PRESETS)}; others: "
                                      f"{', '.join(presets_for('resnet56'))} (default: selective_mca)")
    src.add_argument("--config", metavar="FILE", help="ArchConfig JSON file (e.g. a run's best.json)")
    src.add_argument("--arch", metavar="SPEC", help="preset name, backbone:preset (e.g. resnet56:ghost) or JSON "
                                                    "file, as trainer.train takes it")
    p.add_argument("--backbone", choices=BACKBONE_NAMES, default=None,
                   help=f"network whose --preset to describe (default: {DEFAULT_BACKBONE}; a --config / --arch "
                        f"names its own)")
    p.add_argument("--input", type=int, default=None, metavar="SIZE",
                   help="input resolution (default: the backbone's, 32 for the CIFAR backbones, 224 for "
                        "resnet50); GhostNet: stem stride 1 up to 64 px, else 2")
    p.add_argument("--classes", type=int, default=None,
                   help="classifier outputs (default: 10, 1000 for resnet50)")
    p.add_argument("--stem-stride", type=int, choices=(1, 2), default=None,
                   help="GhostNet only; default: 1 for inputs <= 64 px, else 2")
    p.add_argument("--width", type=float, help="override the config's width multiplier (GhostNet only)")
    p.add_argument("--ratio", type=int, help="override the ghost ratio s (1 = plain convolution)")
    p.add_argument("--dw-size", type=int, help="override the cheap-op kernel d")
    p.add_argument("--kernels", help="override the MCA kernel scales, e.g. 5-7-11")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    return p


def _config_from(args: argparse.Namespace) -> ArchConfig:
    if args.config is not None:
        config = ArchConfig.load(args.config)
    elif args.arch is not None:
        config = load_arch(args.arch)
    else:
        backbone = args.backbone or DEFAULT_BACKBONE
        config = get_preset(args.preset if args.preset is not None else "selective_mca", backbone)
    if args.backbone is not None and config.backbone != args.backbone:
        raise UserError(f"--backbone {args.backbone} contradicts the architecture given, which is a "
                        f"{config.backbone} (drop --backbone or pick a {args.backbone} architecture)")
    overrides: dict[str, Any] = {}
    if args.width is not None:
        overrides["width"] = args.width
    if args.ratio is not None:
        overrides["ratio"] = args.ratio
    if args.dw_size is not None:
        overrides["dw_size"] = args.dw_size
    if args.kernels is not None:
        overrides["kernels"] = parse_kernels(args.kernels)
    return dataclasses.replace(config, **overrides) if overrides else config


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.input is not None and not 1 <= args.input <= MAX_INPUT:
        raise UserError(f"--input must be between 1 and {MAX_INPUT} pixels; got {args.input}")
    try:
        config = _config_from(args)
        report = describe(config, input_size=args.input, num_classes=args.classes, stem_stride=args.stem_stride)
    except ValueError as exc:  # ArchConfig and build_model name the field and the allowed values
        raise UserError(str(exc)) from None
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI, callable in-process: prints the report and returns 0, or exits 2 with one line on stderr.

    A user error raises SystemExit(2) rather than returning 2, so scripts and
    tests calling `main` see the same exit status as `python -m space.describe`.
    """
    status = run_main(_main, argv, prog=PROG)
    if status:
        raise SystemExit(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
