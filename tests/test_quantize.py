"""int8 as deployed (`runtime.quantize`, the `onnxruntime-int8` backend): real ONNX Runtime quantization of
real exports.  What was built and what it computes, never how fast (that is `benchmarks/int8_plans.py`)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from runtime.backends import check_backend, describe_backend
from runtime.onnx_export import export_checked, ort_session
from runtime.quantize import (MCA_FP32, QUANTIZE_ALL, QuantizeError, applies, int8_session, latency_calibration,
                              quantize, quantize_plans, top1)
from space import presets_for
from test_latency_backends import calibrated

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
SHAPE = (3, 32, 32)


@pytest.fixture(scope="module")
def selective():
    """The selective_mca preset's checked fp32 export, its fp32 session, calibration inputs, and its two int8
    models (quantized once for the module: a quantization of an MCA network takes seconds)."""
    data, session, _ = export_checked(calibrated(presets_for("ghostnet")["selective_mca"]), SHAPE, name="selective_mca")
    calib = latency_calibration(SHAPE, 16, seed=3)
    return data, session, calib, quantize_plans(data, calib, (QUANTIZE_ALL, MCA_FP32))


def _weights_quantized(model: onnx.ModelProto) -> dict[str, bool]:
    """Conv node name -> whether its weight comes through a DequantizeLinear (an int8 weight in QDQ)."""
    made_by = {out: n.op_type for n in model.graph.node for out in n.output}
    return {n.name: made_by.get(n.input[1]) == "DequantizeLinear" for n in model.graph.node if n.op_type == "Conv"}


def test_the_int8_backend_is_named_and_refused_off_the_cpu():
    info = describe_backend("onnxruntime-int8", 1)
    assert info["label"].startswith("onnxruntime-int8 ") and info["label"].endswith(", 1 thread")
    assert info["quantization"]["format"] == "QDQ" and [p["rule"] for p in info["quantization"]["plans"]] == \
        ["all", "mca-fp32", "fp32"]
    with pytest.raises(ValueError, match="onnxruntime-int8 times on the CPU"):
        check_backend("onnxruntime-int8", "cuda")


def test_the_mca_fp32_plan_keeps_every_mca_convolution_fp32_and_quantizes_the_rest(selective):
    data, _, _, models = selective
    every = _weights_quantized(onnx.load_from_string(models["all"]))
    kept = _weights_quantized(onnx.load_from_string(models["mca-fp32"]))
    mca = {n for n in kept if "/mca/" in n}
    assert mca and all(every.values()), "QUANTIZE_ALL: every convolution's weight is int8"
    assert not any(kept[n] for n in mca), "MCA_FP32: no MCA convolution is int8"
    assert all(kept[n] for n in kept if n not in mca), "MCA_FP32: every other convolution is int8"


def test_int8_computes_the_network_fp32_computes(selective):
    """Both plans' logits follow fp32's (calibrated on other inputs than the ones compared).  An untrained
    network's logits are near-uniform, so this is correlation (0.83-0.84 measured); how much int8 changes a
    *trained* network's answers is `search.int8`'s agreement (tests/test_confirm.py)."""
    _, fp32, _, models = selective
    inputs = latency_calibration(SHAPE, 8, seed=7)
    expected = np.concatenate([fp32.run(None, {"input": x[None]})[0] for x in inputs])
    for rule in (QUANTIZE_ALL, MCA_FP32):
        session = ort_session(models[rule.name])
        got = np.concatenate([session.run(None, {"input": x[None]})[0] for x in inputs])
        assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] >= 0.7, rule.name
        assert top1(session, inputs).shape == (8,), rule.name


def test_int8_session_ships_the_fastest_plan_and_keeps_the_mca_fp32_only_where_there_is_one(selective):
    """(An MCA network's three plans are chosen between in tests/test_int8_export.py.)"""
    data, _, calib, _ = selective
    plain, _, _ = export_checked(calibrated(presets_for("ghostnet")["ghostnet"]), SHAPE, name="ghostnet")
    assert applies(MCA_FP32, data) and not applies(MCA_FP32, plain)
    _, plan, timings, _ = int8_session(plain, calib)
    assert set(timings) == {"all", "fp32"}, "no MCA: MCA_FP32 would be the all-int8 model again"
    assert plan in timings and all(0 < ms < 1e3 for ms in timings.values()) and timings[plan] == min(timings.values())


@pytest.mark.parametrize("calibration, message", [
    (np.zeros((4, 3, 16, 16), np.float32), "must have shape [N, 3, 32, 32]"),
    (np.zeros((0, 3, 32, 32), np.float32), "with N ≥ 1"),
    (np.full((4, 3, 32, 32), np.nan, np.float32), "NaN or infinite"),
    (np.ones((4, 3, 32, 32), np.float32), "all one value"),
])
def test_calibration_that_cannot_calibrate_is_one_line(selective, calibration, message):
    data, _, _, _ = selective
    with pytest.raises(QuantizeError) as err:
        quantize(data, calibration)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_model_the_quantizer_cannot_read_is_one_line():
    with pytest.raises(QuantizeError, match="cannot quantize broken to int8") as err:
        quantize(b"not an onnx model", latency_calibration(SHAPE), name="broken")
    assert "\n" not in str(err.value)
