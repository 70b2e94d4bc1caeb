"""Rewrite an fp32 ONNX model to fp16, keeping chosen nodes in fp32 behind Casts.

TensorRT 11 has no FP16 builder flag: networks are strongly typed, so an fp16 engine needs an
ONNX model whose tensors already are fp16. The rewrite is node based, because the repair loop
(:mod:`.precision`) has to pin single nodes back to fp32:

* a node runs in fp16 only if its op is in :data:`FP16_OPS` (ops whose arithmetic follows the
  data type), it is not listed in ``keep_fp32_nodes``, and it does not compute shapes (float
  arithmetic on values cast from integers, as paddle2onnx emits for ``reshape`` targets: fp16
  holds integers exactly only up to 2048);
* only the data inputs of an op follow its precision: ``Resize`` scales/roi, ``Reshape`` shapes,
  ``Pad`` pads stay in their own type (the ONNX schema requires it);
* a node whose fp16 constant inputs would not fit fp16 (beyond +-65504) stays fp32 unless
  ``keep_out_of_range_weights=False``;
* initializers and ``Constant`` values are stored in fp16 when every consumer reads them in fp16,
  otherwise they stay fp32 and a ``Cast`` is placed where needed;
* a ``Cast`` is inserted (once per tensor and target type) wherever producer and consumer
  precisions differ; with ``keep_io_types`` graph inputs and outputs stay fp32.

Unnamed nodes get the TensorRT parser's names (:func:`ensure_node_names`) so that names reported
by the sensitivity analysis refer to the same nodes in the fp32 and fp16 graphs and TensorRT.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...log import get_logger
from .naming import name_nodes_like_parser

log = get_logger("onnx.fp16")

FLOAT = TensorProto.FLOAT
FLOAT16 = TensorProto.FLOAT16
FP16_MAX = float(np.finfo(np.float16).max)

#: Input positions that follow the node's precision; ``None`` means every input.
#: Ops not listed here always run in fp32 (unknown ops are never guessed at).
FP16_OPS: dict[str, tuple[int, ...] | None] = {
    **dict.fromkeys(
        (
            "Abs", "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Conv",
            "ConvTranspose", "Div", "Elu", "Erf", "Exp", "Flatten", "Gelu", "Gemm",
            "GlobalAveragePool", "GlobalMaxPool", "HardSigmoid", "HardSwish", "Identity",
            "InstanceNormalization", "LayerNormalization", "LeakyRelu", "Log", "LogSoftmax",
            "MatMul", "Max", "MaxPool", "Mean", "Min", "Mul", "Neg", "PRelu", "Pow",
            "Reciprocal", "Relu", "Sigmoid", "Sin", "Cos", "Softmax", "Softplus", "Sqrt", "Sub",
            "Sum", "Tanh", "Transpose",
        ),
        None,
    ),
    **dict.fromkeys(
        (
            "DepthToSpace", "Expand", "Gather", "ReduceMax", "ReduceMean", "ReduceMin",
            "ReduceSum", "Reshape", "Resize", "Slice", "SpaceToDepth", "Split", "Squeeze",
            "Tile", "Unsqueeze", "Upsample",
        ),
        (0,),
    ),
    "Pad": (0, 2),
    "Where": (1, 2),
}  # fmt: skip

#: Ops that accept any input type, so no Cast is needed in front of them.
TYPE_AGNOSTIC_OPS = frozenset({"Cast", "Shape", "Size", "CastLike"})


def ensure_node_names(model: onnx.ModelProto) -> None:
    """Name unnamed nodes with the TensorRT parser's rule (``node_of_<first output>``) and make
    duplicates unique, in place (:func:`.naming.name_nodes_like_parser`)."""
    name_nodes_like_parser(model)


def tensor_elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor the graph names (after shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types: dict[str, int] = {}
    for info in (*graph.value_info, *graph.input, *graph.output):
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


def _float_slots(node: onnx.NodeProto) -> tuple[int, ...] | None:
    return FP16_OPS.get(node.op_type, ())


def _follows_node(node: onnx.NodeProto, slot: int) -> bool:
    slots = _float_slots(node)
    return slots is None or slot in slots


def _read_as(node: onnx.NodeProto, slot: int, fp16_nodes: set[str]) -> int | None:
    """The type a node reads a float32 tensor in at ``slot``; None if it takes any type."""
    if node.op_type in TYPE_AGNOSTIC_OPS:
        return None
    return FLOAT16 if node.name in fp16_nodes and _follows_node(node, slot) else FLOAT


def _shape_tensors(model: onnx.ModelProto, types: dict[str, int]) -> set[str]:
    """Float tensors computed from integers (shape arithmetic), which must stay exact."""
    constants = {i.name for i in model.graph.initializer}
    constants |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    shape_like: set[str] = set()
    for node in model.graph.node:
        if node.op_type == "Cast":
            if node.input and types.get(node.input[0], FLOAT) not in (FLOAT, FLOAT16):
                shape_like.update(node.output)
            continue
        live = [name for name in node.input if name and name not in constants]
        if (
            live
            and all(name in shape_like or types.get(name) != FLOAT for name in live)
            and any(name in shape_like for name in live)
        ):
            shape_like.update(out for out in node.output if types.get(out) == FLOAT)
    return shape_like


def float_constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Float32 initializers and ``Constant`` node values by tensor name."""
    values = {
        i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type == FLOAT
    }
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT:
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _out_of_range(array: np.ndarray) -> bool:
    finite = array[np.isfinite(array)]
    return bool(finite.size) and float(np.abs(finite).max()) > FP16_MAX


def fp16_node_names(
    model: onnx.ModelProto,
    keep_fp32_nodes: Iterable[str] = (),
    *,
    keep_out_of_range_weights: bool = True,
    types: dict[str, int] | None = None,
) -> set[str]:
    """Names of the nodes :func:`convert_to_fp16` would run in fp16 (names must be ensured)."""
    types = types if types is not None else tensor_elem_types(model)
    keep = set(keep_fp32_nodes)
    shape_like = _shape_tensors(model, types)
    constants = float_constants(model) if keep_out_of_range_weights else {}
    chosen: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in FP16_OPS or node.name in keep:
            continue
        float_outputs = [o for o in node.output if types.get(o) == FLOAT]
        if not float_outputs or any(o in shape_like for o in float_outputs):
            continue
        if any(
            name in constants and _follows_node(node, slot) and _out_of_range(constants[name])
            for slot, name in enumerate(node.input)
        ):
            log.info(
                "%s (%s) stays fp32: a constant input exceeds the fp16 range",
                node.name,
                node.op_type,
            )
            continue
        chosen.add(node.name)
    return chosen


def _to_fp16_array(array: np.ndarray, where: str) -> np.ndarray:
    finite = array[np.isfinite(array)]
    clipped = int(np.count_nonzero(np.abs(finite) > FP16_MAX))
    if clipped:
        log.warning(
            "%s: %d value(s) beyond the fp16 range clipped to +-%g", where, clipped, FP16_MAX
        )
    return np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16)


def convert_model_to_fp16(
    model: onnx.ModelProto,
    *,
    keep_fp32_nodes: Iterable[str] = (),
    keep_io_types: bool = True,
    keep_out_of_range_weights: bool = True,
) -> onnx.ModelProto:
    """Return an fp16 copy of ``model`` (see the module docstring for the rules)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    ensure_node_names(model)
    graph = model.graph
    keep = set(keep_fp32_nodes)
    unknown = keep - {n.name for n in graph.node}
    if unknown:
        raise ValueError(f"keep_fp32_nodes names no node of this graph: {sorted(unknown)[:5]}")
    types = tensor_elem_types(model)
    fp16_nodes = fp16_node_names(
        model, keep, keep_out_of_range_weights=keep_out_of_range_weights, types=types
    )
    total_nodes = len(graph.node)

    # Which precision each float32 tensor is read in, per consumer (None: type-agnostic).
    consumers: dict[str, list[int | None]] = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            if not name or types.get(name) != FLOAT:
                continue
            consumers.setdefault(name, []).append(_read_as(node, slot, fp16_nodes))
    graph_outputs = {o.name for o in graph.output}
    io_type = FLOAT if keep_io_types else FLOAT16
    for name in graph_outputs:
        if types.get(name) == FLOAT:
            consumers.setdefault(name, []).append(io_type)

    def stored_as_fp16(name: str) -> bool:
        wanted = [w for w in consumers.get(name, []) if w is not None]
        return bool(wanted) and all(w == FLOAT16 for w in wanted)

    # Decide what every float32 tensor becomes.
    produced: dict[str, int] = {}
    for inp in graph.input:
        if inp.type.tensor_type.elem_type == FLOAT:
            produced[inp.name] = io_type
            inp.type.tensor_type.elem_type = io_type
    for init in graph.initializer:
        if init.data_type == FLOAT and stored_as_fp16(init.name):
            init.CopyFrom(
                numpy_helper.from_array(
                    _to_fp16_array(numpy_helper.to_array(init), init.name), init.name
                )
            )
        produced[init.name] = init.data_type
    for node in graph.node:
        if node.op_type == "Constant" and types.get(node.output[0]) == FLOAT:
            attr = next(a for a in node.attribute if a.name == "value")
            if stored_as_fp16(node.output[0]):
                value = _to_fp16_array(numpy_helper.to_array(attr.t), node.name)
                attr.t.CopyFrom(numpy_helper.from_array(value, attr.t.name))
            produced[node.output[0]] = attr.t.data_type
            continue
        for out in node.output:
            if types.get(out) == FLOAT:
                produced[out] = FLOAT16 if node.name in fp16_nodes else FLOAT

    # Graph outputs keep their names: an fp16 producer writes to a renamed tensor, then a Cast.
    renames: dict[str, str] = {}
    for out in graph.output:
        if produced.get(out.name, io_type) != io_type and out.name not in {
            i.name for i in graph.input
        }:
            renames[out.name] = f"{out.name}__{'fp16' if io_type == FLOAT else 'fp32'}"
            produced[renames[out.name]] = produced[out.name]
    for node in graph.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
        node.input[:] = [renames.get(i, i) for i in node.input]

    new_nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}

    def cast_of(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            suffix = "to_fp16" if to == FLOAT16 else "to_fp32"
            casts[key] = f"{name}__{suffix}"
            new_nodes.append(
                helper.make_node("Cast", [name], [casts[key]], name=f"{name}__cast_{suffix}", to=to)
            )
        return casts[key]

    for node in graph.node:
        for slot, name in enumerate(node.input):
            if not name or types.get(name) != FLOAT:
                continue
            wanted = _read_as(node, slot, fp16_nodes)
            if wanted is not None and produced.get(name, FLOAT) != wanted:
                node.input[slot] = cast_of(name, wanted)
        new_nodes.append(node)
    for original, internal in renames.items():
        new_nodes.append(
            helper.make_node(
                "Cast", [internal], [original], name=f"{original}__cast_output", to=io_type
            )
        )
    for out in graph.output:
        if out.type.tensor_type.elem_type == FLOAT:
            out.type.tensor_type.elem_type = io_type

    graph.ClearField("node")
    graph.node.extend(new_nodes)
    graph.ClearField("value_info")
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    log.info(
        "fp16 rewrite: %d of %d nodes in fp16, %d kept fp32 on request, %d casts",
        len(fp16_nodes),
        total_nodes,
        len(keep),
        len(casts) + len(renames),
    )
    return model


def save_model_atomic(model: onnx.ModelProto, out_path: str | Path) -> Path:
    """Write ``model`` so that ``out_path`` is either absent, the old file, or complete."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(model.SerializeToString())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def convert_to_fp16(
    onnx_path: str | Path,
    out_path: str | Path,
    *,
    keep_fp32_nodes: Iterable[str] = (),
    keep_io_types: bool = True,
    keep_out_of_range_weights: bool = True,
) -> Path:
    """Write an fp16 version of ``onnx_path`` to ``out_path`` (checked, atomically written).

    ``keep_fp32_nodes`` are node names of the source graph (unnamed nodes: see
    :func:`ensure_node_names`) that stay in fp32, with Casts at their boundaries.
    ``keep_out_of_range_weights`` keeps nodes whose constants exceed +-65504 in fp32 (otherwise
    the constants are clipped, as naive converters do, which is how PP-OCRv4 det breaks: one
    BatchNormalization has running variances up to 1e8).
    """
    model = onnx.load(str(onnx_path))
    converted = convert_model_to_fp16(
        model,
        keep_fp32_nodes=keep_fp32_nodes,
        keep_io_types=keep_io_types,
        keep_out_of_range_weights=keep_out_of_range_weights,
    )
    return save_model_atomic(converted, out_path)
