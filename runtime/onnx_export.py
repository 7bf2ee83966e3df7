"""A network (or one block of it) as an ONNX model, checked against PyTorch before anyone times it.

Why ONNX: a batch-1 GhostNet in PyTorch eager is mostly the framework's
per-operator overhead (6-9x the time ONNX Runtime needs, in another order:
docs/latency.md), so the latency a search optimises is the one of the model
as deployed — exported to ONNX and run by a runtime.  An export that is
silently wrong would time another network, so every export is checked: the
runtime's output on a random input must equal PyTorch's (max abs difference
at most `TOLERANCE`, relative to the output's scale for feature maps).

The exporter is `torch.onnx.export(dynamo=False)` (TorchScript tracing) at
opset `OPSET`: it needs no package beyond torch (the dynamo exporter would
need onnxscript) and exports every block the menu can produce (tested on all
presets of the three CIFAR backbones and a seeded sample of the menu).  An
architecture that cannot export is an `ExportError` (a `UserError`: one
line naming it), never a silent fallback to another backend.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from cli_kit import UserError

OPSET = 18  # ONNX Runtime 1.16+ runs it; the opset the measurements used
TOLERANCE = 1e-4  # max abs difference of logits (or of a feature map, per unit of its largest magnitude)
INPUT_NAME, OUTPUT_NAME = "input", "output"


class ExportError(UserError):
    """A network that cannot be exported, or whose export computes something else: one line naming it."""


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    """Silence file descriptors 1 and 2 (the exporter prints a failing graph from C++): an error is one line."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def export_bytes(module: nn.Module, input_shape: tuple[int, ...], *, name: str,
                 metadata: Mapping[str, Any] | None = None) -> bytes:
    """`module` (eval mode, batch 1, float32, NCHW) as a serialised ONNX model; `name` names it in errors.

    `metadata` goes into the model's metadata_props (what it is, who exported it):
    a model file on a device still says which architecture it is.
    """
    was_training = module.training
    module = module.eval().to("cpu", memory_format=torch.contiguous_format)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet_fds():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (torch.zeros(1, *input_shape),), buffer, opset_version=OPSET, dynamo=False,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - whatever the exporter raises, the user gets one line
        raise ExportError(f"cannot export {name} to ONNX (opset {OPSET}): {_first_line(exc)}") from None
    finally:
        module.train(was_training)
    return with_metadata(buffer.getvalue(), metadata) if metadata else buffer.getvalue()


def with_metadata(data: bytes, metadata: Mapping[str, Any]) -> bytes:
    """`data` with `metadata` in its metadata_props, each key set once (an existing entry of a key is replaced)."""
    import onnx

    model = onnx.load_from_string(data)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    for key, value in [*kept, *metadata.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    return model.SerializeToString()


def ort_session(model: bytes | str, threads: int = 1):
    """An ONNX Runtime CPU session as deployed: all graph optimisations, `threads` intra-op threads, sequential."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: warnings about unused initialisers are not the user's concern
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def max_abs_difference(module: nn.Module, session, input_shape: tuple[int, ...],
                       seed: int = 0) -> tuple[float, float]:
    """(max |ONNX Runtime − PyTorch|, max |PyTorch|) on one seeded random input."""
    was_training = module.training
    x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(seed))
    try:
        expected = module.eval()(x).numpy()
    finally:
        module.train(was_training)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != expected.shape:
        return float("inf"), 0.0
    return float(np.max(np.abs(got - expected))), float(np.max(np.abs(expected)))


def export_checked(module: nn.Module, input_shape: tuple[int, ...], *, name: str, threads: int = 1,
                   metadata: Mapping[str, Any] | None = None) -> tuple[bytes, Any, float]:
    """(ONNX bytes, its ONNX Runtime session, max abs difference) for `module`; ExportError when the
    export fails or its output differs from PyTorch's by more than TOLERANCE."""
    data = export_bytes(module, input_shape, name=name, metadata=metadata)
    try:
        session = ort_session(data, threads)
    except Exception as exc:  # noqa: BLE001 - a model the runtime refuses is the export's failure
        raise ExportError(f"ONNX Runtime cannot load the export of {name}: {_first_line(exc)}") from None
    diff, scale = max_abs_difference(module, session, input_shape)
    if not diff <= TOLERANCE * max(1.0, scale):  # feature maps of a block can reach the hundreds
        raise ExportError(f"the ONNX export of {name} computes something else: max abs difference {diff:.3g} "
                          f"from PyTorch (tolerance {TOLERANCE:g})")
    return data, session, diff


__all__ = ["ExportError", "OPSET", "TOLERANCE", "export_bytes", "export_checked", "with_metadata", "max_abs_difference",
           "ort_session"]
