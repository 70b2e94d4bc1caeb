"""Activation memory of the default profiles' execution contexts stays within the 16 GB budget.

Estimates come from ONNX shape inference on the real PP-OCRv4 det/rec/cls graphs at each
profile's max shapes (``backend/onnx/activation_memory.py``); fp32 is the worst case. Contexts
are created with ON_PROFILE_CHANGE, so each holds its own profile's memory, and in the worst case
every profile of every model has a live context: the budget applies to the sum.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from paddleocr_trt.backend.onnx.activation_memory import (
    GIB,
    estimate_activation_memory,
    estimate_profiles,
)
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.profiles import (
    ACTIVATION_BUDGET_BYTES,
    CONTEXT_BUDGET_BYTES,
    default_profiles,
    spec_profile,
)


@pytest.fixture(scope="module")
def estimates(onnx_models):
    out = {}
    for mtype, conv in onnx_models.items():
        model = onnx.load(str(conv.onnx_path))
        profiles = default_profiles(mtype, conv.input_name)
        out[mtype] = estimate_profiles(model, profiles, float_bytes=4)
    return out


def test_default_profiles_fit_a_16gb_card(estimates) -> None:
    lines, total = [], 0
    for mtype, per_profile in estimates.items():
        for est in per_profile:
            assert est.unknown_tensors == 0, (mtype, est)
            assert est.peak_bytes > 0
            lines.append(f"{mtype.value} {est.shapes} peak {est.peak_gib:.2f} GiB")
            total += est.peak_bytes
    report = "\n".join(lines) + f"\nall contexts {total / GIB:.2f} GiB"
    print(report)
    for per_profile in estimates.values():
        for est in per_profile:
            assert est.peak_bytes <= CONTEXT_BUDGET_BYTES, report
    assert total <= ACTIVATION_BUDGET_BYTES, report


def test_the_spec_det_profile_alone_would_not_fit(onnx_models) -> None:
    """Why the spec's batch-50 det profile is no longer a default (issue 9)."""
    det = onnx_models[ModelType.DETECTION]
    sp = spec_profile(ModelType.DETECTION)
    fp32 = estimate_activation_memory(det.onnx_path, {det.input_name: sp.max}, float_bytes=4)
    fp16 = estimate_activation_memory(det.onnx_path, {det.input_name: sp.max}, float_bytes=2)
    assert fp32.peak_bytes > 2 * ACTIVATION_BUDGET_BYTES
    assert fp16.peak_bytes == fp32.peak_bytes // 2


def test_estimate_on_a_hand_built_chain() -> None:
    """x -> Relu -> a -> Relu -> b -> Add(a, b) -> y: a lives until the Add, so the peak is
    a + b; graph input and output are the caller's buffers, not context memory."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    model = helper.make_model(helper.make_graph(nodes, "chain", [x], [y]))
    est = estimate_activation_memory(model, {"x": (10, 8)})
    one = 10 * 8 * np.dtype(np.float32).itemsize
    assert (est.peak_bytes, est.total_bytes, est.io_bytes) == (2 * one, 2 * one, 2 * one)
    with pytest.raises(ValueError, match="no graph inputs"):
        estimate_activation_memory(model, {"image": (1, 8)})
