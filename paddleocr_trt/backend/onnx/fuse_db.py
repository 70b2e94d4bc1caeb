"""Det graph transform: the DB binarisation inside the engine, its bitmap returned packed.

Why: the det probability map is float32 (N, 1, H, W), 5.6 MB for a 1000x1400 page and 48 MB
for a 3000x4000 one, and PaddleX's ``DBPostProcess`` first thresholds all of it
(``pred > thresh``) to find contours. :func:`append_db_bitmap` does that comparison in the
graph and packs the result 8 pixels a byte (numpy's ``packbits`` order, most significant bit
first), 32x fewer bytes than the map; the map stays an output for the box scores, which read it
only inside candidate boxes (:mod:`paddleocr_trt.postprocess.resident`).

The threshold is an input (``db_thresh``, float32, one per image) because PaddleOCR takes
``text_det_thresh`` per call. numpy compares a float32 map with a Python float in float32
(the scalar is cast), so feeding ``np.float32(thresh)`` gives the same bits as stock.
PaddleX's det resize makes H and W multiples of 32 (the network needs it), so W/8 is whole.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...log import get_logger
from ...postprocess.bitmap import unpack_db_bitmap  # noqa: F401  (read side, kept here too)
from .fuse import _opset, _unused_name, single_output

log = get_logger("onnx.fuse")

#: Input and output names a graph fused by :func:`append_db_bitmap` adds.
DB_THRESH_INPUT = "db_thresh"
DB_BITMAP_OUTPUT = "db_bitmap"
_BIT_WEIGHTS = np.array([128, 64, 32, 16, 8, 4, 2, 1], dtype=np.int32)


def append_db_bitmap(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a det graph that also returns ``db_bitmap`` = packbits(map > db_thresh).

    The graph must have one output, the float32 (N, 1, H, W) probability map; it stays the
    first output, the packed bitmap (N, 1, H, W/8) uint8 is the second. ``db_thresh`` is a new
    float32 (N,) input (one threshold per image, batch-major like the image input).
    """
    graph = model.graph
    if any(i.name == DB_THRESH_INPUT for i in graph.input):
        raise ValueError("graph already returns the DB bitmap (fused twice?)")
    source, dims = single_output(model, "append_db_bitmap", "the DB probability map")
    if len(dims) != 4 or source.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ValueError(f"det output {source.name!r} must be float32 (N, 1, H, W), got {dims}")

    fused = copy.deepcopy(model)
    g = fused.graph
    name = {k: _unused_name(g, f"db_{k}") for k in ("t4", "on", "on_i32", "bits", "w", "sum")}
    const = {k: _unused_name(g, f"db_{k}_const") for k in ("t_shape", "bits_shape", "w", "axis")}
    g.initializer.extend(
        [
            numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), const["t_shape"]),
            numpy_helper.from_array(np.array([0, 0, 0, -1, 8], np.int64), const["bits_shape"]),
            numpy_helper.from_array(_BIT_WEIGHTS, const["w"]),
        ]
    )
    nodes = [
        helper.make_node(
            "Reshape", [DB_THRESH_INPUT, const["t_shape"]], [name["t4"]], name="db_thresh_nchw"
        ),
        helper.make_node("Greater", [source.name, name["t4"]], [name["on"]], name="db_binarize"),
        helper.make_node(
            "Cast", [name["on"]], [name["on_i32"]], name="db_bits_i32", to=TensorProto.INT32
        ),
        helper.make_node(
            "Reshape", [name["on_i32"], const["bits_shape"]], [name["bits"]], name="db_bits_x8"
        ),
        helper.make_node("Mul", [name["bits"], const["w"]], [name["w"]], name="db_bit_weights"),
    ]
    if _opset(fused) >= 13:
        g.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), const["axis"]))
        nodes.append(
            helper.make_node(
                "ReduceSum", [name["w"], const["axis"]], [name["sum"]], name="db_pack", keepdims=0
            )
        )
    else:
        nodes.append(
            helper.make_node(
                "ReduceSum", [name["w"]], [name["sum"]], name="db_pack", axes=[-1], keepdims=0
            )
        )
    nodes.append(
        helper.make_node(
            "Cast", [name["sum"]], [DB_BITMAP_OUTPUT], name="db_bitmap_u8", to=TensorProto.UINT8
        )
    )
    g.node.extend(nodes)
    g.input.append(helper.make_tensor_value_info(DB_THRESH_INPUT, TensorProto.FLOAT, [dims[0]]))
    width = dims[3] // 8 if isinstance(dims[3], int) and dims[3] > 0 else None
    g.output.append(
        helper.make_tensor_value_info(
            DB_BITMAP_OUTPUT, TensorProto.UINT8, [dims[0], dims[1], dims[2], width]
        )
    )
    onnx.checker.check_model(fused)
    log.debug("appended the packed DB bitmap after %r", source.name)
    return fused


def db_thresh_input(thresh: float, batch: int) -> np.ndarray:
    """The ``db_thresh`` input for ``batch`` images: the threshold as numpy compares it."""
    return np.full((batch,), np.float32(thresh), dtype=np.float32)
