"""`python -m runtime.export SOURCE -o model.onnx`: the chosen network as the artifact a device runs.

SOURCE is what `trainer.train` wrote (its `checkpoint.pt`, or its output
folder holding `model.pt` and `arch.json`), or an architecture without
weights — `best.json` from `analysis.select`, a preset name — for an
untrained model whose latency is the architecture's anyway.  The export is
checked (ONNX Runtime's logits equal PyTorch's to `runtime.onnx_export.
TOLERANCE`; the difference is printed), carries its architecture in the
model's metadata, is written atomically, and its deployed latency — ONNX
Runtime, CPU, `--threads` threads, batch 1, `runtime.timing`'s protocol — is
printed with the runtime's version.

`python -m runtime.export model.onnx` times an existing ONNX file the same way
(on the device: what it runs at there).  Every user error — a missing or
corrupt source or .onnx, an -o that cannot be written — is one line, exit 2,
and nothing is written.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from cli_kit import Parser, UserError, run_main
from space import ArchConfig, build_model, get_backbone, load_arch

from .backends import backend_label, runtime_version
from host.files import write_atomic
from .onnx_export import OPSET, export_checked, ort_session
from host.device import describe_device

from .timing import Protocol, Timing, run_protocol

PROG = "runtime.export"


def build_parser() -> Parser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="trainer.train's checkpoint.pt or output folder, an ArchConfig JSON (best.json) "
                                  "or preset name (untrained), or an .onnx file to time")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="the ONNX model to write (not for .onnx)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads for the latency (default 1)")
    p.add_argument("--seed", type=int, default=0, help="weights of an untrained model (default %(default)s)")
    return p


def load_source(source: str, seed: int = 0) -> tuple[ArchConfig, torch.nn.Module, str]:
    """(architecture, model with its weights, what they are) from a checkpoint, a training's folder or an arch."""
    path = Path(source)
    if path.is_dir():
        if not (path / "arch.json").is_file() or not (path / "model.pt").is_file():
            raise UserError(f"{path} is not a trainer.train output folder (no arch.json and model.pt)")
        return _with_weights(_arch(path / "arch.json"), _load(path / "model.pt"), f"trained ({path / 'model.pt'})")
    if path.suffix == ".pt":
        ckpt = _load(path)
        if not isinstance(ckpt, dict) or "arch" not in ckpt or "model" not in ckpt:
            raise UserError(f"{path} is not a trainer.train checkpoint (no arch and model)")
        try:
            arch = ArchConfig.from_dict(ckpt["arch"])
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"{path}: the checkpoint's arch is malformed ({exc})") from None
        return _with_weights(arch, ckpt["model"], f"trained {ckpt.get('epoch', '?')} epochs ({path})")
    arch = _arch(source)
    torch.manual_seed(seed)
    return arch, build_model(arch), f"untrained (random weights, seed {seed}): the latency is the architecture's"


def _arch(spec: str | Path) -> ArchConfig:
    try:
        return load_arch(spec)
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot read the architecture {spec}: {' '.join(str(exc).split())}") from None


def _load(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        raise UserError(f"cannot read {path} ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None


def _with_weights(arch: ArchConfig, state: Any, what: str) -> tuple[ArchConfig, torch.nn.Module, str]:
    model = build_model(arch)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise UserError(f"the weights do not fit {arch.key}: {' '.join(str(exc).split())[:200]}") from None
    return arch, model, what


def check_writable(out: Path) -> None:
    """Refuse an -o the model could never be written to, before exporting (one line, exit 2)."""
    if not out.parent.is_dir():
        raise UserError(f"cannot write {out}: folder {out.parent} does not exist")
    if out.is_dir():
        raise UserError(f"cannot write {out}: it is a folder")
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UserError(f"cannot write {out}: permission denied")


def time_session(session, threads: int) -> Timing:
    """The deployed latency of an ONNX Runtime session: batch 1, `runtime.timing`'s protocol."""
    import numpy as np

    arg = session.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in arg.shape]
    feed = {arg.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    return run_protocol(lambda: session.run(None, feed), Protocol(), "thread" if threads == 1 else "wall")


def latency_line(timing: Timing, threads: int) -> str:
    device = describe_device("cpu", threads)["name"]
    return (f"latency: {timing.median_ms:.3f} ms median [{timing.ci_low_ms:.3f}, {timing.ci_high_ms:.3f}] "
            f"(n {timing.n}, p10-p90 {timing.p10_ms:.3f}-{timing.p90_ms:.3f} ms), batch 1, "
            f"{backend_label('onnxruntime', runtime_version('onnxruntime'), threads)} on {device}")


def time_file(path: Path, threads: int) -> int:
    """Time an existing .onnx: its metadata, then its latency."""
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        session = ort_session(str(path), threads)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a corrupt model
        raise UserError(f"{path} is not an ONNX model ONNX Runtime can load: "
                        f"{' '.join(str(exc).split())[:200]}") from None
    meta = session.get_modelmeta().custom_metadata_map
    print(f"{path}: {meta.get('arch_key', 'architecture not recorded')}")
    print(latency_line(time_session(session, threads), threads))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if args.source.endswith(".onnx"):
        if args.output is not None:
            raise UserError("an .onnx source is timed, not exported: drop -o")
        return time_file(Path(args.source), args.threads)
    if args.output is None:
        raise UserError("-o FILE (the .onnx to write) is required")
    out = Path(args.output)
    check_writable(out)
    arch, model, what = load_source(args.source, args.seed)
    meta = {"arch_key": arch.key, "arch": json.dumps(arch.to_dict()),
            "weights": what, "exporter": f"torch {torch.__version__} (TorchScript), opset {OPSET}",
            "producer": "ghostnas runtime.export"}
    size = get_backbone(arch.backbone).input_size
    data, session, diff = export_checked(model, (3, size, size), name=arch.key, threads=args.threads, metadata=meta)
    try:
        write_atomic(out, data)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"{out}: {arch.key}, {what}; ONNX opset {OPSET}, {len(data) / 1e6:.1f} MB")
    print(f"logits check: max abs difference {diff:.2e} from PyTorch (tolerance 1e-4)")
    print(latency_line(time_session(session, args.threads), args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
