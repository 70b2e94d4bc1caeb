"""Static check of an ONNX graph against what TensorRT's ONNX parser accepts, without TensorRT.

Two rule sets: the parser's operator support matrix (``trt_operator_matrix``: operator, data
type, the documented restrictions that can be read off the graph, opset range), and, for
strongly typed networks (every build on TensorRT 10.12+ and 11.x), the type rule that the inputs
of an elementwise operation, Concat, MatMul/Gemm, Conv/ConvTranspose and Where carry one float
type: a strongly typed network inserts no casts, so an fp16 tensor meeting an fp32 one there is
a build error. Used by the tests on every graph the pipeline hands to TensorRT, and callable by
``doctor``/the pipeline to fail early with the node named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from .fp16 import tensor_elem_types
from .trt_operator_matrix import MATRIX_SOURCE, MAX_OPSET, MIN_OPSET, OPERATORS

#: ONNX element type -> the matrix's type names (DOUBLE is cast down to FP32 by the parser).
TYPE_NAMES = {
    TensorProto.FLOAT: "FP32",
    TensorProto.FLOAT16: "FP16",
    TensorProto.BFLOAT16: "BF16",
    TensorProto.INT32: "INT32",
    TensorProto.INT64: "INT64",
    TensorProto.BOOL: "BOOL",
    TensorProto.UINT8: "UINT8",
    TensorProto.INT8: "INT8",
    TensorProto.DOUBLE: "FP32",
}
#: A typo in the source matrix (ConstantOfShape lists "INF64").
TYPE_ALIASES = {"INF64": "INT64"}
FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}

#: Operations whose float inputs must share one type in a strongly typed network.
SAME_TYPE_OPS = frozenset(
    {
        "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Mod", "PRelu",
        "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual",
        "Concat", "MatMul", "Gemm", "Conv", "ConvTranspose", "Where",
    }
)  # fmt: skip
#: Ops whose ``axes`` input must be a constant (the matrix: "must be an initializer").
CONSTANT_AXES_OPS = {
    "Slice": 3,
    "Squeeze": 1,
    "Unsqueeze": 1,
    "Pad": 3,
    "ReduceMean": 1,
    "ReduceSum": 1,
    "ReduceMax": 1,
    "ReduceMin": 1,
    "ReduceProd": 1,
    "ReduceL1": 1,
    "ReduceL2": 1,
    "ReduceLogSum": 1,
    "ReduceLogSumExp": 1,
    "ReduceSumSquare": 1,
}
RESIZE_MODES = {"nearest", "linear"}
RESIZE_COORDS = {
    "half_pixel",
    "pytorch_half_pixel",
    "tf_half_pixel_for_nn",
    "asymmetric",
    "align_corners",
}
RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}


@dataclass(frozen=True)
class SupportProblem:
    """One reason TensorRT's parser or a strongly typed build would reject the graph."""

    node: str
    op_type: str
    rule: str  # "opset" | "domain" | "operator" | "type" | "restriction" | "mixed-types"
    detail: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op_type}): {self.rule}: {self.detail}"


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _restrictions(node: onnx.NodeProto, constants: set[str]) -> list[str]:
    """The matrix's documented restrictions that the graph alone can decide."""
    out = []
    slot = CONSTANT_AXES_OPS.get(node.op_type)
    axes = node.input[slot] if slot is not None and len(node.input) > slot else ""
    if axes and axes not in constants:
        out.append(f"input {slot} (axes) must be a constant, got tensor {axes!r}")
    if node.op_type == "Resize":
        mode = _attr(node, "mode", "nearest")
        coords = _attr(node, "coordinate_transformation_mode", "half_pixel")
        nearest = _attr(node, "nearest_mode", "round_prefer_floor")
        if mode not in RESIZE_MODES:
            out.append(f"resize mode {mode!r} unsupported")
        if coords not in RESIZE_COORDS:
            out.append(f"coordinate_transformation_mode {coords!r} unsupported")
        if mode == "nearest" and nearest not in RESIZE_NEAREST:
            out.append(f"nearest_mode {nearest!r} unsupported")
        if int(_attr(node, "antialias", 0)):
            out.append("antialiasing unsupported")
    if node.op_type in ("MaxPool", "AveragePool"):
        kernel = _attr(node, "kernel_shape", [])
        if len(kernel) not in (2, 3):  # type: ignore[arg-type]
            out.append(f"only 2D/3D pooling, kernel_shape {kernel}")
        if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
            out.append("the Indices output is unsupported")
    return out


def _type_of(node: onnx.NodeProto, types: dict[str, int]) -> int | None:
    """The type the matrix's "Supported Types" refers to: the data input's (else output's)."""
    for name in [*node.input[:1], *node.output[:1]]:
        if name and name in types:
            return types[name]
    return None


def check_trt_support(
    model: onnx.ModelProto | str | Path, *, strongly_typed: bool
) -> list[SupportProblem]:
    """Every problem TensorRT's ONNX parser (and, if ``strongly_typed``, the type rules of a
    strongly typed network) would have with ``model``; empty when it should build.

    The matrix is :data:`~.trt_operator_matrix.MATRIX_SOURCE`. Tensors whose type shape
    inference cannot tell are not type-checked.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    problems: list[SupportProblem] = []
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        problems.append(
            SupportProblem(
                "<model>", "", "opset", f"opset {opset} outside {MIN_OPSET}..{MAX_OPSET}"
            )
        )
    types = tensor_elem_types(model)
    constants = {i.name for i in model.graph.initializer} | {
        o for n in model.graph.node if n.op_type == "Constant" for o in n.output
    }
    for node in model.graph.node:
        name = node.name or (f"node_of_{node.output[0]}" if node.output else node.op_type)

        def add(rule: str, detail: str, node: onnx.NodeProto = node, name: str = name) -> None:
            problems.append(SupportProblem(name, node.op_type, rule, detail))

        if node.domain not in ("", "ai.onnx"):
            add("domain", f"custom domain {node.domain!r} needs a TensorRT plugin")
            continue
        entry = OPERATORS.get(node.op_type)
        if entry is None or not entry[0]:
            add("operator", f"not supported by the parser ({MATRIX_SOURCE})")
            continue
        supported = {TYPE_ALIASES.get(t, t) for t in entry[1]}
        elem = _type_of(node, types)
        if elem is not None and TYPE_NAMES.get(elem, str(elem)) not in supported:
            add("type", f"{TYPE_NAMES.get(elem, elem)} not in {sorted(supported)}")
        for detail in _restrictions(node, constants):
            add("restriction", detail)
        if strongly_typed and node.op_type in SAME_TYPE_OPS:
            inputs = node.input[1:] if node.op_type == "Where" else node.input
            floats = {types[i] for i in inputs if i and types.get(i) in FLOAT_TYPES}
            if len(floats) > 1:
                seen = {i: TYPE_NAMES.get(types.get(i, 0), "?") for i in inputs if i}
                add("mixed-types", f"inputs of different float types {seen}")
    return problems
