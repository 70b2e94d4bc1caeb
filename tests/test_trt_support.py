"""Every ONNX the pipeline hands to TensorRT passes the parser's support matrix and, for strongly
typed builds, the type rules; the checker itself catches a hand-built bad graph.

Graphs checked (det, rec, cls): the cached fp32 ONNX (flag-path and strongly typed builds),
its fp16 conversion (10.12+/11.x FP16), and an fp16 conversion with FP32-pinned nodes (the
pipeline's second attempt). The pinned set here is every third fp16 node, so the graph has many
fp16/fp32 boundaries: more than the pipeline's pins of up to 8 sensitive nodes create. Each also
as the builder really gets it: fused (uint8 NHWC input for det/cls, argmax output for rec),
fusion applied after the fp16 conversion as ``fusion.artifacts.engine_onnx`` does.
"""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from paddleocr_trt.backend.onnx.fp16 import (
    convert_model_to_fp16,
    ensure_node_names,
    fp16_node_names,
)
from paddleocr_trt.backend.onnx.trt_operator_matrix import MATRIX_SOURCE, OPERATORS
from paddleocr_trt.backend.onnx.trt_support import check_trt_support
from paddleocr_trt.model_types import ModelType


@pytest.fixture(scope="module")
def trt_graphs(onnx_models, ocr_models) -> dict[tuple[ModelType, str], onnx.ModelProto]:
    from paddleocr_trt.fusion.graphs import fuse_model

    graphs = {}
    for mtype, conv in onnx_models.items():
        fp32 = onnx.load(str(conv.onnx_path))
        ensure_node_names(fp32)
        order = [n.name for n in fp32.graph.node]
        fp16_nodes = fp16_node_names(fp32)
        pins = [n for n in order if n in fp16_nodes][::3]
        graphs[mtype, "fp32"] = fp32
        graphs[mtype, "fp16"] = convert_model_to_fp16(fp32)
        graphs[mtype, "fp16-pinned"] = convert_model_to_fp16(fp32, keep_fp32_nodes=pins)
        for variant in ("fp32", "fp16", "fp16-pinned"):
            copy = onnx.ModelProto()
            copy.CopyFrom(graphs[mtype, variant])
            graphs[mtype, f"fused-{variant}"] = fuse_model(mtype, copy, ocr_models.dir_for(mtype))
    return graphs


@pytest.mark.parametrize(
    "variant",
    ["fp32", "fp16", "fp16-pinned", "fused-fp32", "fused-fp16", "fused-fp16-pinned"],
)
@pytest.mark.parametrize("mtype", list(ModelType), ids=lambda m: m.value)
def test_pipeline_graphs_pass_the_parser_matrix_and_type_rules(
    trt_graphs, mtype: ModelType, variant: str
) -> None:
    model = trt_graphs[mtype, variant]
    problems = check_trt_support(model, strongly_typed=True)
    assert problems == [], "\n".join(map(str, problems))
    if variant in ("fp32", "fused-fp32"):  # the flag path (< 10.12) parses the fp32 graph
        assert check_trt_support(model, strongly_typed=False) == []
    if not variant.endswith("fp32"):
        fp16 = {i.type.tensor_type.elem_type for i in model.graph.value_info} | {
            t.data_type for t in model.graph.initializer
        }
        assert TensorProto.FLOAT16 in fp16  # the variant really is mixed/fp16


def test_matrix_is_the_documented_one() -> None:
    assert "onnx/onnx-tensorrt" in MATRIX_SOURCE
    assert OPERATORS["Conv"][0] is True
    assert OPERATORS["Unique"][0] is False
    assert len(OPERATORS) > 150


def _graph(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "bad", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_checker_reports_each_kind_of_problem_on_a_bad_graph() -> None:
    f32 = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4])
    f16 = helper.make_tensor_value_info("b", TensorProto.FLOAT16, [1, 4])
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    img = helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 1, 4, 4])
    out = helper.make_tensor_value_info("o", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Cast", ["b"], ["b32"], to=TensorProto.FLOAT, name="ok_cast"),
        helper.make_node("Add", ["a", "b"], ["mixed"], name="mixed_add"),
        helper.make_node("Unique", ["a"], ["u"], name="unique"),
        helper.make_node("Squeeze", ["a", "axes"], ["sq"], name="dynamic_axes"),
        helper.make_node("Resize", ["img", "", "scales"], ["r"], mode="cubic", name="cubic"),
        helper.make_node("MyOp", ["a"], ["c"], domain="com.example", name="custom"),
        helper.make_node("Add", ["a", "b32"], ["o"], name="fine_add"),
    ]
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    model = _graph(nodes, [f32, f16, axes, img], [out], inits=[scales])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    found = {(p.node, p.rule) for p in check_trt_support(model, strongly_typed=True)}
    assert found == {
        ("mixed_add", "mixed-types"),
        ("unique", "operator"),
        ("dynamic_axes", "restriction"),
        ("cubic", "restriction"),
        ("custom", "domain"),
    }
    # Without strong typing the parser inserts casts itself: mixed types are not an error.
    loose = {(p.node, p.rule) for p in check_trt_support(model, strongly_typed=False)}
    assert ("mixed_add", "mixed-types") not in loose and ("unique", "operator") in loose


def test_checker_reports_opset_and_type_outside_the_matrix() -> None:
    s = helper.make_tensor_value_info("s", TensorProto.STRING, [1])
    out = helper.make_tensor_value_info("t", TensorProto.STRING, [1])
    model = _graph([helper.make_node("Identity", ["s"], ["t"], name="id")], [s], [out], opset=21)
    found = {(p.node, p.rule) for p in check_trt_support(model, strongly_typed=False)}
    assert found == {("<model>", "opset"), ("id", "type")}


def test_removing_a_boundary_cast_from_a_real_pinned_graph_is_caught(trt_graphs) -> None:
    """The real-graph check is not vacuous: bypass one fp16/fp32 boundary Cast feeding a
    same-type op and the strongly typed rule must name that op."""
    from paddleocr_trt.backend.onnx.trt_support import SAME_TYPE_OPS

    model = onnx.ModelProto.FromString(
        trt_graphs[ModelType.DETECTION, "fp16-pinned"].SerializeToString()
    )
    casts = {n.output[0]: n for n in model.graph.node if n.op_type == "Cast"}
    for node in model.graph.node:
        fed = [i for i in node.input if i in casts]
        if node.op_type in SAME_TYPE_OPS and fed and len([i for i in node.input if i]) > 1:
            slot = list(node.input).index(fed[0])
            node.input[slot] = casts[fed[0]].input[0]
            victim = node.name
            break
    else:
        pytest.fail("no boundary Cast feeding a same-type op in the pinned det graph")
    found = [p for p in check_trt_support(model, strongly_typed=True) if p.node == victim]
    assert [p.rule for p in found] == ["mixed-types"]
