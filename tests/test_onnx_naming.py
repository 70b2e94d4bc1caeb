"""Node names of the cached ONNX are the layer names TensorRT's ONNX parser will give.

The parser's rule, from onnx-tensorrt (``getNodeName`` in ``onnxOpImporters.cpp``, 10.x)::

    if (node.name().empty() && (node.output_size() != 0))
        return "node_of_" + node.output(0);
    else
        return node.name();

FP32 pins are node names chosen by the sensitivity analysis; before the fix the analysis named
unnamed nodes ``<op>__<index>`` while TensorRT named them ``node_of_<output>``, so those pins
matched no layer.
"""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

from paddleocr_trt.backend.onnx.fp16 import ensure_node_names
from paddleocr_trt.backend.onnx.naming import (
    name_nodes_like_parser,
    parser_layer_name,
    unmatched_patterns,
)
from paddleocr_trt.model_types import ModelType


def _parser_rule(node: onnx.NodeProto) -> str:
    """The C++ rule above, written out independently of the package."""
    if node.name == "" and len(node.output) != 0:
        return "node_of_" + node.output[0]
    return node.name


@pytest.mark.parametrize("mtype", list(ModelType), ids=lambda m: m.value)
def test_analysis_names_are_the_parser_layer_names(onnx_models, mtype: ModelType) -> None:
    cached = onnx.load(str(onnx_models[mtype].onnx_path))
    parser_names = [_parser_rule(n) for n in cached.graph.node]
    assert all(parser_names) and len(set(parser_names)) == len(parser_names)
    analysed = onnx.load(str(onnx_models[mtype].onnx_path))
    ensure_node_names(analysed)  # what find_fp16_sensitive_nodes / convert_to_fp16 do
    assert [n.name for n in analysed.graph.node] == parser_names


def test_unnamed_export_nodes_were_named_by_the_parser_rule(onnx_models) -> None:
    """paddle2onnx leaves many nodes unnamed (det 48 of 280 in review); the cache names them."""
    det = onnx.load(str(onnx_models[ModelType.DETECTION].onnx_path))
    by_rule = [n for n in det.graph.node if n.name == "node_of_" + n.output[0]]
    assert by_rule, "expected unnamed export nodes to carry node_of_<output> names"


def test_naming_on_a_hand_built_graph() -> None:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),  # unnamed
        helper.make_node("Sigmoid", ["a"], ["b"], name="act"),
        helper.make_node("Relu", ["b"], ["c"], name="act"),  # duplicate name
        helper.make_node("Identity", ["c"], ["y"], name=""),
    ]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]))
    assert [parser_layer_name(n) for n in model.graph.node] == [
        "node_of_a",
        "act",
        "act",
        "node_of_y",
    ]
    assert name_nodes_like_parser(model) == 3
    assert [n.name for n in model.graph.node] == ["node_of_a", "act", "act__1", "node_of_y"]
    assert name_nodes_like_parser(model) == 0  # idempotent
    assert unmatched_patterns(model, ["node_of_a", "Relu__0", "act*"]) == ["Relu__0"]
