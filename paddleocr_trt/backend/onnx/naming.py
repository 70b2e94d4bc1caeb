"""Node names that are also TensorRT layer names.

TensorRT's ONNX parser (onnx-tensorrt ``getNodeName``, ``onnxOpImporters.cpp``/``ModelImporter``,
10.x) names the layer of a node after ``node.name`` and, for an unnamed node, after its first
output: ``"node_of_" + node.output(0)``. FP32 pins found by the fp16 sensitivity analysis are
node names, so they only reach TensorRT's layers if the ONNX that TensorRT parses carries the
same names. Naming the unnamed nodes *in the cached ONNX* with the parser's own rule makes the
names identical everywhere (analysis, fp16 conversion, parser), whatever the parser version.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

import onnx

from ...log import get_logger

log = get_logger("onnx.naming")

#: onnx-tensorrt's prefix for the layer of an unnamed node (followed by its first output).
PARSER_UNNAMED_PREFIX = "node_of_"


def parser_layer_name(node: onnx.NodeProto) -> str:
    """The name TensorRT's ONNX parser gives the layer of ``node``."""
    if not node.name and len(node.output) > 0:
        return PARSER_UNNAMED_PREFIX + node.output[0]
    return node.name


def name_nodes_like_parser(model: onnx.ModelProto) -> int:
    """Name unnamed nodes as the parser would, and make duplicate names unique; in place.

    Returns how many nodes were (re)named. A duplicate keeps its name with ``__<n>`` appended
    (the parser would disambiguate them in its own way, so the cached ONNX must not have any).
    """
    seen: set[str] = set()
    renamed = 0
    for node in model.graph.node:
        name = parser_layer_name(node) or f"{node.op_type}__unnamed"
        if name in seen:
            base, n = name, 1
            while f"{base}__{n}" in seen:
                n += 1
            name = f"{base}__{n}"
        if name != node.name:
            node.name = name
            renamed += 1
        seen.add(name)
    if renamed:
        log.debug("named %d ONNX node(s) with the TensorRT parser's rule", renamed)
    return renamed


def unmatched_patterns(model: onnx.ModelProto, patterns: Iterable[str]) -> list[str]:
    """The fnmatch patterns that match no node name of ``model`` (pins that would do nothing)."""
    names = [n.name for n in model.graph.node]
    return [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
