"""`python -m runtime.latency_table`: flags, the checks before hours of measuring, and the build's printout;
`export-blocks` hands over to `runtime.block_export`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import torch

from cli_kit import Parser, UserError
from host.device import describe_device, resolve_device
from host.files import temp_path
from space import SearchSpace, get_backbone
from space.config import BACKBONE_NAMES, DEFAULT_BACKBONE, format_kernels
from space.search_space import DEFAULT_KERNEL_SETS, DEFAULT_RATIOS, parse_ints, parse_kernel_sets

from ..backends import BACKENDS, check_backend, default_backend
from ..block_export import main as export_blocks
from ..timing import Protocol
from .build import Progress, build_table, open_for_build
from .format import PROG


def build_parser() -> Parser:
    p = Parser(prog=f"python -m {PROG}",
               description="Measure every block the search menu can produce, in isolation, into a latency "
                           "table (JSON) that search.run --latency-table predicts latency_ms from.")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="table to write; an existing table for the same device is extended (resume)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto: the target device (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of the runtime while timing (default 1)")
    p.add_argument("--latency-backend", default=None, metavar="NAME",
                   help=f"runtime the blocks are timed in: {' or '.join(BACKENDS)} (default onnxruntime on the CPU, "
                        "torch on CUDA)")
    p.add_argument("--kernel-sets", default=None, help=f"MCA kernel-scale menu (default {DEFAULT_KERNEL_SETS})")
    p.add_argument("--ratios", default=None, help=f"ghost ratio menu (default {DEFAULT_RATIOS})")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier of the menu (default 1.0)")
    p.add_argument("--dw-size", type=int, default=3, help="cheap-op kernel d of the menu (default 3)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help=f"network whose blocks are timed: {', '.join(BACKBONE_NAMES)} (default %(default)s)")
    p.add_argument("--input", type=int, default=None, metavar="SIZE",
                   help="input resolution (default the backbone's: 32, 224 for resnet50)")
    p.add_argument("--rel-ci", type=float, default=Protocol.rel_ci,
                   help="stop timing a block when the median's 95%% interval is within ± this fraction "
                        "(default %(default)g)")
    p.add_argument("--min-repeats", type=int, default=Protocol.min_repeats, help="timed runs at least (default %(default)s)")
    p.add_argument("--max-repeats", type=int, default=Protocol.max_repeats, help="timed runs at most (default %(default)s)")
    p.add_argument("--max-seconds", type=float, default=Protocol.max_s,
                   help="timing seconds per block at most (default %(default)g)")
    p.add_argument("--refit", action="store_true", help="re-measure the presets and refit the overhead constant")
    return p


def check_writable(out: Path) -> None:
    """Refuse an output the table could never be saved to before hours of measuring (one line, exit 2)."""
    if not out.parent.is_dir():
        raise UserError(f"cannot write {out}: folder {out.parent} does not exist")
    probe = temp_path(out)  # where `save` writes before its rename
    try:
        with open(probe, "w"):
            pass
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export-blocks"]:
        return export_blocks(argv[1:])
    args = build_parser().parse_args(argv)
    space, protocol, device, size = _checked(args)
    backend = check_backend(args.latency_backend or default_backend(device), device)
    out = Path(args.output)
    check_writable(out)
    bar: Progress | None = None

    def progress(done: int, total: int, key: str) -> None:
        nonlocal bar
        if total == 0:
            return
        if bar is None:
            bar = Progress(total, "blocks")
        bar.update(done, key)

    info = describe_device(device, args.threads)
    # Refuse an incompatible existing table before saying anything else (one line, exit 2).
    fresh = open_for_build(out, info, backbone=space.backbone, batch_size=1, input_size=size,
                           num_classes=get_backbone(space.backbone).num_classes, protocol=protocol, backend=backend)
    print(f"latency table {out}: {space.backbone} on {info['label']}, timed in {fresh.backend_label}, "
          f"torch {torch.__version__}, batch 1, "
          f"{size}x{size}, "
          f"menu kernels {','.join(format_kernels(k) for k in space.kernel_sets)} ratios "
          f"{','.join(map(str, space.ratios))} width {space.width:g} d {space.dw_size}", file=sys.stderr, flush=True)
    result = build_table(out, space, device=device, threads=args.threads, protocol=protocol,
                         input_size=size, refit=args.refit, progress=progress, backend=backend)
    table = result.table
    unstable = sum(1 for e in table.entries.values() if not e.get("converged", True))
    print(f"measured {result.measured} blocks, kept {result.kept}; {len(table.entries)} entries, "
          f"{unstable} without a ±{protocol.rel_ci:.0%} median interval; "
          f"overhead {table.overhead_ms:+.3f} ms{' (refitted)' if result.fitted else ''}")
    for f in table.data["overhead"]["fit"]:
        print(f"  {f['preset']:14s} measured {f['measured_ms']:8.3f} ms  blocks {f['blocks_ms']:8.3f} ms  "
              f"residual {f['residual_ms']:+.3f} ms")
    print(f"table: {out}")
    return 0


def _checked(args) -> tuple[SearchSpace, Protocol, torch.device, int]:
    """The menu, the timing protocol, the device and the input size from the flags (UserError otherwise)."""
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    try:
        space = SearchSpace(kernel_sets=parse_kernel_sets(args.kernel_sets or DEFAULT_KERNEL_SETS),
                            ratios=parse_ints(args.ratios or DEFAULT_RATIOS, "--ratios"),
                            width=args.width, dw_size=args.dw_size, backbone=args.backbone)
        protocol = Protocol(min_repeats=args.min_repeats, max_repeats=args.max_repeats, max_s=args.max_seconds,
                            rel_ci=args.rel_ci)
        device = resolve_device(args.device)
    except UserError:
        raise
    except ValueError as exc:
        raise UserError(str(exc)) from None
    size = get_backbone(space.backbone).input_size if args.input is None else args.input
    if not 8 <= size <= 1024:
        raise UserError(f"--input must be in 8..1024, got {size}")
    return space, protocol, device, size
