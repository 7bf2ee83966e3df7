"""int8 as deployed: ONNX Runtime's post-training static quantization of a checked fp32 export.

Edge NPUs, DSPs and phone CPUs run int8, so the latency a search optimises
for them is the int8 model's.  The recipe is ONNX Runtime's own
(`onnxruntime.quantization`, not hand-written): the fp32 export
(`runtime.onnx_export`, checked against PyTorch) is pre-processed
(`quant_pre_process`: constant folding, so every convolution's bias is an
initializer the quantizer folds — without it every Ghost and MCA network
ran slower in int8 than in fp32), then `quantize_static` in QDQ format with
per-channel int8 weights and uint8 activations, MinMax calibration.

Quantize what pays (docs/latency.md, "int8").  Measured here, quantizing
the whole network pays for most networks but not for every MCA one: the
MCA's strip convolutions and its attention pay quantize/dequantize pairs
that can outweigh the int8 arithmetic (GhostNet all_mca: 4.33 ms int8 vs
4.03 fp32; 3.90 with the MCA kept fp32), while on other MCA networks
keeping the MCA fp32 costs more than it saves.  And on ResNet-56
(16-64 channels at 32x32) no int8 model beats fp32: the ghost preset runs
1.15x slower in int8, and keeping depthwise or narrow convolutions fp32
does not recover it.  So every network is built as each plan of `PLANS`
— all int8, MCA kept fp32 (MCA networks only), and fp32 itself — and the
fastest, timed interleaved in the session it will run in, is the model
used (`int8_session`): what a careful engineer ships, never slower than
fp32 by construction, with the plan recorded.

Calibration.  Latency does not depend on the scales the calibration picks
(the same int8 kernels run whatever their scales), so the latency backend
and per-block tables calibrate on `LATENCY_CALIBRATION` seeded standard
normal inputs, which needs no data on a device; accuracy is calibrated on
real training images, never on the test images it reports.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator, NamedTuple, Sequence

import numpy as np

from cli_kit import UserError

LATENCY_CALIBRATION = 8  # seeded normal inputs for a latency-only int8 model (scales do not change the kernels)
ACCURACY_CALIBRATION = 256  # training images an int8 model's accuracy is calibrated on (docs/latency.md, "int8")


@dataclass(frozen=True)
class Int8Rule:
    """What stays fp32: nodes whose exported name contains one of `keep_fp32` (e.g. "/mca/")."""

    keep_fp32: tuple[str, ...] = ()
    name: str = "all"

    def excluded(self, node_names: Sequence[str]) -> list[str]:
        return [n for n in node_names if any(f in n for f in self.keep_fp32)]

    def describe(self) -> dict[str, Any]:
        return {"rule": self.name, "keep_fp32": list(self.keep_fp32)}


QUANTIZE_ALL = Int8Rule()
MCA_FP32 = Int8Rule(keep_fp32=("/mca/",), name="mca-fp32")
NOTHING = Int8Rule(keep_fp32=("",), name="fp32")  # quantization does not pay: the fp32 model is shipped
PLANS = (QUANTIZE_ALL, MCA_FP32, NOTHING)  # tried in this order; the fastest is used (module docstring)
SELECT_ROUNDS, SELECT_RUNS = 3, 20  # interleaved rounds x timed runs per plan when choosing between plans


class QuantizeError(UserError):
    """A model that cannot be quantized, or calibration data that is not usable: one line."""


SETTINGS = {"method": "onnxruntime.quantization.quantize_static", "format": "QDQ", "weights": "int8 per-channel",
            "activations": "uint8", "calibration": "MinMax"}


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over an array of inputs (one at batch 1 each)."""

    def __init__(self, name: str, inputs: np.ndarray) -> None:
        self._it = iter([{name: x[None]} for x in inputs])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - part of the protocol, unused by MinMax
        return None


def latency_calibration(input_shape: tuple[int, ...], n: int = LATENCY_CALIBRATION, seed: int = 0) -> np.ndarray:
    """`n` seeded standard normal inputs of `input_shape`: the calibration of a latency-only int8 model."""
    return np.random.default_rng(seed).standard_normal((n, *input_shape)).astype(np.float32)


def check_calibration(inputs: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """`inputs` as float32 [N, *input_shape]; QuantizeError (one line) when they cannot calibrate."""
    arr = np.asarray(inputs)
    if arr.ndim != len(input_shape) + 1 or tuple(arr.shape[1:]) != tuple(input_shape) or len(arr) == 0:
        raise QuantizeError(f"calibration inputs must have shape [N, {', '.join(map(str, input_shape))}] with N ≥ 1, "
                            f"got {list(arr.shape)}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise QuantizeError("calibration inputs hold NaN or infinite values: the images are corrupt")
    if float(arr.max() - arr.min()) == 0.0:
        raise QuantizeError("calibration inputs are all one value: they cannot set an activation range")
    return arr


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantizer logs advice through the root logger; a user sees one line or the result, not its advice."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize(fp32: bytes, calibration: np.ndarray, rule: Int8Rule = QUANTIZE_ALL, *, name: str = "network") -> bytes:
    """The int8 (QDQ) model of the fp32 ONNX model `fp32`, calibrated on `calibration` [N, C, H, W]."""
    return quantize_plans(fp32, calibration, (rule,), name=name)[rule.name]


def quantize_plans(fp32: bytes, calibration: np.ndarray, rules: Sequence[Int8Rule], *,
                   name: str = "network") -> dict[str, bytes]:
    """{rule name: int8 model} of `fp32` for each rule, pre-processed once (NOTHING: `fp32` itself)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="ghostnas-int8-") as tmp, _quiet_quantizer():
        src, pre = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "pre.onnx")
        with open(src, "wb") as f:
            f.write(fp32)
        try:
            quant_pre_process(src, pre, skip_symbolic_shape=True)
            model = onnx.load(pre)
            input_name = model.graph.input[0].name
            shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)[1:]
            data = check_calibration(calibration, shape)
            for rule in rules:
                if rule is NOTHING:
                    out[rule.name] = fp32
                    continue
                dst = os.path.join(tmp, f"int8-{rule.name}.onnx")
                quantize_static(pre, dst, _Reader(input_name, data), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                nodes_to_exclude=rule.excluded([n.name for n in model.graph.node]))
                with open(dst, "rb") as f:
                    out[rule.name] = f.read()
        except QuantizeError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the quantizer raises, the user gets one line
            text = " ".join(str(exc).split())[:300]
            raise QuantizeError(f"cannot quantize {name} to int8: {type(exc).__name__}: {text}") from None
    return out


def applies(rule: Int8Rule, fp32: bytes) -> bool:
    """Whether `rule` keeps any node of `fp32` in fp32 (else it is the same model as QUANTIZE_ALL)."""
    import onnx

    return bool(rule.excluded([n.name for n in onnx.load_from_string(fp32).graph.node]))


def _median_ms(session, feed: dict[str, np.ndarray], runs: int, now: Callable[[], float]) -> float:
    times = []
    for _ in range(runs):
        start = now()
        session.run(None, feed)
        times.append(now() - start)
    return float(np.median(times)) * 1e3


class Int8Choice(NamedTuple):
    """The model `int8_session` ships: its session, its plan's name, every plan's median ms, its bytes (to write)."""

    session: Any
    plan: str
    timings: dict[str, float]
    model: bytes


def int8_session(fp32: bytes, calibration: np.ndarray, *, threads: int = 1, name: str = "network",
                 alone: Callable[[], ContextManager] | None = None) -> Int8Choice:
    """The model that pays most among `PLANS` (module docstring), as an `Int8Choice`.

    MCA_FP32 is built only where the network has MCA nodes (else it is QUANTIZE_ALL's model); each plan
    is timed `SELECT_RUNS` times per round over `SELECT_ROUNDS` interleaved rounds (after a warm-up) and
    the lowest median of the round medians wins.  One thread is timed in the thread's CPU time, as
    `runtime.timing` does; `alone()` (the node slot's exclusive hold) is held while timing.
    """
    from .onnx_export import ort_session

    plans = [p for p in PLANS if p is not MCA_FP32 or applies(p, fp32)]
    models = quantize_plans(fp32, calibration, plans, name=name)
    sessions = [ort_session(models[p.name], threads) for p in plans]
    feed = {sessions[0].get_inputs()[0].name: calibration[:1]}
    now = time.thread_time if threads == 1 else time.perf_counter
    rounds: list[list[float]] = [[] for _ in plans]
    with alone() if alone is not None else contextlib.nullcontext():
        for s in sessions:
            _median_ms(s, feed, 5, now)  # warm-up: first runs allocate
        for r in range(SELECT_ROUNDS):
            order = range(len(plans)) if r % 2 == 0 else reversed(range(len(plans)))
            for i in order:
                rounds[i].append(_median_ms(sessions[i], feed, SELECT_RUNS, now))
    medians = [float(np.median(x)) for x in rounds]
    best = int(np.argmin(medians))
    return Int8Choice(sessions[best], plans[best].name, {p.name: m for p, m in zip(plans, medians)},
                      models[plans[best].name])


def logits(session, images: np.ndarray) -> np.ndarray:
    """Logits of `images` [N, C, H, W] through an ONNX Runtime `session`, one image at a time (the deployed
    batch, and the exports' fixed batch dimension)."""
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: images[i:i + 1]})[0] for i in range(len(images))])


def top1(session, images: np.ndarray, tta: bool = False) -> np.ndarray:
    """Predicted classes of `images`; `tta` adds the logits of each image's mirror, as training's evaluation does."""
    out = logits(session, images)
    if tta:
        out = out + logits(session, np.ascontiguousarray(images[..., ::-1]))
    return out.argmax(1)


__all__ = ["ACCURACY_CALIBRATION", "Int8Choice", "Int8Rule", "LATENCY_CALIBRATION", "MCA_FP32", "NOTHING", "PLANS", "QUANTIZE_ALL", "QuantizeError",
           "SETTINGS", "applies", "check_calibration", "int8_session", "latency_calibration", "logits", "quantize", "quantize_plans", "top1"]
