"""Checked repairs for ONNX graphs that paddle2onnx 2.x emits invalid.

Root cause of the known breakage (paddle >= 3.0 + paddle2onnx 2.1.0, PP-OCRv4 rec and the
ch_ppocr_mobile_v2 cls model): Paddle 3 has true 0-D tensors, so ``x.shape[0]`` in a
``reshape(x, [x.shape[0], 0, 120])`` is a scalar, while literal entries become ``full`` tensors of
shape ``[1]``. paddle2onnx's reshape mapper builds the target shape with a ``Concat(axis=0)`` over
those pieces without first making the scalars 1-D. ONNX forbids mixing ranks in ``Concat`` (and
a ``Concat`` of scalars is invalid at any axis), so ONNX Runtime and the checker refuse the graph.
Paddle's meaning is unambiguous: each scalar is one element of the shape vector. The repair
``Unsqueeze``\\ s each rank-0 input to ``[1]``.

Every repair is reported by name so callers can record it, and nothing here is trusted: the
converter runs strict shape inference, the checker and a real ONNX Runtime inference afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...log import get_logger

log = get_logger("onnx.repair")

#: Upper bound on inference/repair rounds; each round can only reveal ranks behind the last one.
_MAX_ROUNDS = 8


@dataclass(frozen=True)
class Repair:
    """One applied change: the pass, the node it touched and what it did."""

    pass_name: str
    node: str
    detail: str

    def __str__(self) -> str:
        return f"{self.pass_name}: {self.node}: {self.detail}"


def _opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ValueError("model imports no default-domain opset")


def tensor_ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Ranks of every tensor ONNX shape inference can determine (non-strict: an invalid node
    must not hide the ranks of the tensors feeding it)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    graph = inferred.graph
    ranks: dict[str, int] = {init.name: len(init.dims) for init in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        tensor_type = value.type.tensor_type
        if tensor_type.HasField("shape"):
            ranks[value.name] = len(tensor_type.shape.dim)
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    ranks[node.output[0]] = len(attr.t.dims)
    return ranks


def _unsqueeze_node(model: onnx.ModelProto, source: str, name: str) -> list[onnx.NodeProto]:
    """An ``Unsqueeze(axes=[0])`` in the form the model's opset wants (attribute before 13)."""
    if _opset(model) < 13:
        return [helper.make_node("Unsqueeze", [source], [name], name=name, axes=[0])]
    axes_name = f"{name}.axes"
    axes = helper.make_node(
        "Constant",
        [],
        [axes_name],
        name=axes_name,
        value=numpy_helper.from_array(np.array([0], dtype=np.int64), axes_name),
    )
    return [axes, helper.make_node("Unsqueeze", [source, axes_name], [name], name=name)]


def _concat_axis(node: onnx.NodeProto) -> int:
    for attr in node.attribute:
        if attr.name == "axis":
            return int(attr.i)
    return 0


def fix_scalar_concat(model: onnx.ModelProto) -> list[Repair]:
    """Make rank-0 ``Concat`` inputs rank-1 where every input is rank 0 or 1 (in place)."""
    repairs: list[Repair] = []
    ranks = tensor_ranks(model)
    new_nodes: list[onnx.NodeProto] = []
    changed = False
    for index, node in enumerate(model.graph.node):
        if node.op_type != "Concat":
            new_nodes.append(node)
            continue
        input_ranks = [ranks.get(name) for name in node.input]
        if (
            None in input_ranks
            or 0 not in input_ranks
            or not set(input_ranks) <= {0, 1}
            or _concat_axis(node) not in (0, -1)
        ):
            new_nodes.append(node)
            continue
        node_name = node.name or f"Concat#{index}"
        fixed: list[int] = []
        for position, (source, rank) in enumerate(zip(node.input, input_ranks, strict=True)):
            if rank != 0:
                continue
            unsqueezed = f"{source}.p2t_rank1.{node_name}.{position}"
            new_nodes.extend(_unsqueeze_node(model, source, unsqueezed))
            node.input[position] = unsqueezed
            fixed.append(position)
        if _concat_axis(node) == -1:
            for attr in node.attribute:
                if attr.name == "axis":
                    attr.i = 0
        new_nodes.append(node)
        changed = True
        repairs.append(
            Repair(
                "scalar-concat",
                node_name,
                f"unsqueezed rank-0 input(s) {fixed} of input ranks {input_ranks} to rank 1",
            )
        )
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
    return repairs


#: Passes in the order they run; each mutates the model and returns what it did.
REPAIR_PASSES = (fix_scalar_concat,)


def repair_model(model: onnx.ModelProto) -> list[Repair]:
    """Run every repair pass until none changes anything; return all repairs applied.

    Repeats because shape inference stops at an invalid node, so a second invalid node behind
    the first only shows its input ranks once the first is fixed.
    """
    applied: list[Repair] = []
    for _ in range(_MAX_ROUNDS):
        round_repairs = [repair for repair_pass in REPAIR_PASSES for repair in repair_pass(model)]
        if not round_repairs:
            break
        applied.extend(round_repairs)
    for repair in applied:
        log.debug("repaired ONNX graph: %s", repair)
    return applied
