"""`python -m runtime.latency_table export-blocks DIR`: the menu's blocks as ONNX files, for a device without PyTorch.

A phone board or a Raspberry Pi runs ONNX Runtime, not PyTorch.  This writes
what a latency table needs there, and nothing that needs torch to read:

    DIR/manifest.json    the table's settings (backbone, input size, menu, exporting torch, opset) and,
                         per block key, its ONNX file, kind, position and input shape; the presets too
    DIR/blocks/*.onnx    every distinct block of the menu and the presets (stem, units, head), checked
    DIR/presets/*.onnx   the presets whole: the device fits the table's overhead constant on them
    DIR/time_blocks.py   the timer: imports only onnxruntime and numpy (`runtime/device_timer.py`)

On the device: `python3 time_blocks.py DIR -o table.json` times every block
(cold, as `runtime.latency_table` does in ONNX Runtime) and every preset,
and writes the table; back here `search.run --latency-table table.json`
predicts every trial's latency on that device.

`--int8` writes the table of `--latency-backend onnxruntime-int8`: beside
each block's and preset's fp32 file, its int8 plans (`runtime.quantize`:
all-int8 and, where the block holds an MCA, MCA kept fp32; calibrated on
seeded normal inputs, which is all a latency needs).  The device times
every plan and keeps the fastest, as `int8_session` chooses here: which
plan pays is the device's answer, not this machine's.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from cli_kit import Parser, UserError
from space import SearchSpace, build_model, count_params, get_backbone, presets_for
from space.blocks import network_blocks
from space.config import BACKBONE_NAMES, DEFAULT_BACKBONE
from space.search_space import DEFAULT_KERNEL_SETS, DEFAULT_RATIOS, parse_ints, parse_kernel_sets

from .backends import FLUSH_BYTES, describe_backend
from .latency_table.build import table_configs
from .onnx_export import OPSET, export_checked

MANIFEST_FORMAT = "ghostnas-block-models"
MANIFEST_VERSION = 1
SCRIPT = Path(__file__).with_name("device_timer.py")


def build_parser() -> Parser:
    p = Parser(prog="python -m runtime.latency_table export-blocks", description=__doc__.split("\n\n")[0])
    p.add_argument("dir", metavar="DIR", help="folder to write (new, or empty)")
    p.add_argument("--kernel-sets", default=DEFAULT_KERNEL_SETS, help="MCA kernel-scale menu (default %(default)s)")
    p.add_argument("--ratios", default=DEFAULT_RATIOS, help="ghost ratio menu (default %(default)s)")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier of the menu (default 1.0)")
    p.add_argument("--dw-size", type=int, default=3, help="cheap-op kernel d of the menu (default 3)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help=f"{', '.join(BACKBONE_NAMES)} (default %(default)s)")
    p.add_argument("--int8", action="store_true",
                   help="also write every block's int8 plans: the device's table is then onnxruntime-int8's")
    return p


def _space(args) -> SearchSpace:
    try:
        return SearchSpace(kernel_sets=parse_kernel_sets(args.kernel_sets), ratios=parse_ints(args.ratios, "--ratios"),
                           width=args.width, dw_size=args.dw_size, backbone=args.backbone)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _target(path: Path) -> Path:
    """DIR, created; refused (one line) when it holds files or cannot be made."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"{path} exists and is not an empty folder: choose another DIR")
    try:
        (path / "blocks").mkdir(parents=True, exist_ok=True)
        (path / "presets").mkdir(exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _int8_plans(out: Path, stem: str, data: bytes, input_shape: Sequence[int], name: str) -> dict[str, str]:
    """{plan: file} of one checked fp32 model: itself as "fp32", and each int8 plan that differs from it."""
    from .quantize import NOTHING, MCA_FP32, PLANS, applies, latency_calibration, quantize_plans

    rules = [p for p in PLANS if p is not NOTHING and (p is not MCA_FP32 or applies(p, data))]
    files = {NOTHING.name: f"{stem}.onnx"}
    for plan, model in quantize_plans(data, latency_calibration(tuple(input_shape)), rules, name=name).items():
        files[plan] = f"{stem}.{plan}.onnx"
        _write(out / files[plan], model)
    return files


def export_blocks(out: Path, space: SearchSpace, int8: bool = False) -> dict[str, Any]:
    """Every block of the menu and the presets, and the presets whole, as checked ONNX files; the manifest.
    `int8`: each with its int8 plans beside it (module docstring)."""
    entry = get_backbone(space.backbone)
    shape = {"num_classes": entry.num_classes, "input_size": entry.input_size}
    blocks: dict[str, dict[str, Any]] = {}
    for config in dict.fromkeys(table_configs(space)):
        for block in network_blocks(build_model(config, **shape)):
            if block.key in blocks:
                continue
            data, _, _ = export_checked(block.module, block.input_shape, name=f"block {block.key}")
            name = f"blocks/{len(blocks):04d}.onnx"
            _write(out / name, data)
            blocks[block.key] = {"file": name, "kind": block.kind, "index": block.index,
                                 "input_shape": list(block.input_shape), "params": count_params(block.module)}
            if int8:
                blocks[block.key]["plans"] = _int8_plans(out, name[:-5], data, block.input_shape, f"block {block.key}")
    presets = {}
    for preset, config in presets_for(space.backbone).items():
        model = build_model(config, **shape)
        data, _, _ = export_checked(model, (3, entry.input_size, entry.input_size), name=f"preset {preset}")
        _write(out / f"presets/{preset}.onnx", data)
        presets[preset] = {"file": f"presets/{preset}.onnx", "key": config.key,
                           "blocks": [b.key for b in network_blocks(model)]}
        if int8:
            presets[preset]["plans"] = _int8_plans(out, f"presets/{preset}", data, (3, entry.input_size,
                                                                                     entry.input_size), preset)
    backend = describe_backend("onnxruntime-int8" if int8 else "onnxruntime", 1)
    return {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "backbone": space.backbone,
            "backend": backend["name"], **({"quantization": backend["quantization"]} if int8 else {}),
            "torch": torch.__version__, "exporter": f"torch {torch.__version__} (TorchScript)", "opset": OPSET,
            "batch_size": 1, "input_size": entry.input_size, "num_classes": entry.num_classes,
            "block_cache_flush_bytes": FLUSH_BYTES, "menus": [space.to_dict()], "blocks": blocks, "presets": presets}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    space = _space(args)
    out = _target(Path(args.dir))
    try:
        manifest = export_blocks(out, space, int8=args.int8)
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        shutil.copyfile(SCRIPT, out / "time_blocks.py")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # nothing half-written is left to be copied to a device
        raise
    print(f"{out}: {len(manifest['blocks'])} blocks and {len(manifest['presets'])} presets of {space.backbone} "
          f"as ONNX (opset {OPSET}, each checked against PyTorch){', with their int8 plans' if args.int8 else ''}")
    print(f"on the device (python3 with onnxruntime and numpy): python3 time_blocks.py {out.name} -o table.json")
    print("then here: python -m search.run --latency-table table.json ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
