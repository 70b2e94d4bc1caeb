"""Fused graphs as engine artifacts: what the pipeline writes, keys and builds (issue 11).

Why its own module: :mod:`paddleocr_trt.pipeline` caches and validates; the choices here (which
graph version, which input name and layout the engine then takes, where fp16 conversion sits
relative to fusion) belong to the fused graphs and change with them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..model_types import ModelType

#: Cache-key setting of every engine artifact built from a fused graph. Bump it when
#: :func:`~paddleocr_trt.fusion.fuse_model` changes what it produces.
FUSED_GRAPH = "fused-v3"  # v2: det also returns the packed DB bitmap; v3: NCHW normalisation


def fused_io(model_type: ModelType) -> str:
    """What crosses the engine boundary of a fused graph, for backend reports."""
    if model_type is ModelType.RECOGNITION:
        return "returns CTC index + max prob"
    return "takes uint8 NHWC images"


def fused_input_name(model_type: ModelType, base_input: str) -> str:
    """The input name of the fused graph: det/cls take uint8 images, rec keeps its input."""
    from ..backend.onnx.fuse import UINT8_INPUT

    return base_input if model_type is ModelType.RECOGNITION else UINT8_INPUT


def with_side_inputs(model_type: ModelType, profiles: list[Any], image_input: str) -> list[Any]:
    """Profiles of a fused graph's extra inputs added to each image profile: det's ``db_thresh``
    (N,) follows the image input's batch range."""
    if model_type is not ModelType.DETECTION:
        return profiles
    from ..backend.onnx.fuse_db import DB_THRESH_INPUT
    from ..profiles import ShapeProfile

    out = []
    for prof in profiles:
        image = prof[image_input]
        side = ShapeProfile((image.min[0],), (image.opt[0],), (image.max[0],))
        out.append({**prof, DB_THRESH_INPUT: side})
    return out


def write_fused_onnx(
    model_type: ModelType, source: Path, model_dir: Path, target: Path
) -> dict[str, Any]:
    """Write ``fuse_model`` of the ONNX at ``source`` to ``target``; return manifest metadata."""
    import onnx

    from ..backend.onnx.fp16 import save_model_atomic
    from . import graphs

    fused = graphs.fuse_model(model_type, onnx.load(str(source)), model_dir)
    save_model_atomic(fused, target)
    initializers = {i.name for i in fused.graph.initializer}
    return {
        "graph": FUSED_GRAPH,
        "input_names": [i.name for i in fused.graph.input if i.name not in initializers],
        "output_names": [o.name for o in fused.graph.output],
    }


def engine_onnx(
    model_type: ModelType,
    model_dir: Path,
    onnx_path: Path,
    tmp: Path,
    *,
    fp16_onnx: bool,
    keep_fp32_nodes: tuple[str, ...] = (),
    fused32: Path | None = None,
) -> tuple[Path, Path | None]:
    """(fused fp32 ONNX, fused fp16 ONNX or None) to hand to the TensorRT builder.

    Fusion comes after the fp16 conversion (``fp16_onnx``: TensorRT 11's strongly typed FP16):
    the converter then keeps the uint8 prologue and the argmax/max epilogue out of fp16, and
    ``keep_fp32_nodes`` name nodes of the unfused graph, which fusion leaves in place.
    ``fused32``: the fused fp32 graph already made (the recipe's cached engine graph), else it
    is fused here once per ``tmp``.
    """
    if fused32 is None:
        fused32 = tmp / "model.fused.onnx"
    if not fused32.is_file():
        write_fused_onnx(model_type, onnx_path, model_dir, fused32)
    if not fp16_onnx:
        return fused32, None
    from ..backend.onnx.fp16 import convert_to_fp16

    tag = hashlib.sha1("\n".join(keep_fp32_nodes).encode()).hexdigest()[:10]
    base16 = convert_to_fp16(
        onnx_path, tmp / f"model.fp16-{tag}.onnx", keep_fp32_nodes=keep_fp32_nodes
    )
    fused16 = tmp / f"model.fp16-{tag}.fused.onnx"
    write_fused_onnx(model_type, base16, model_dir, fused16)
    return fused32, fused16


def check_fused_graph(
    model_type: ModelType,
    model_dir: Path,
    reference: Any,
    candidate: Any,
    pairs: list[Any],
    *,
    min_agreement: float,
    tolerance: float | str | None = "fp32",
) -> Any:
    """``comparator.fused.compare_fused`` with the pipeline's defaults: ``tolerance`` "fp32"
    (a fused graph against its unfused graph on one runtime) or None (task agreement only)."""
    from ..comparator.fused import FP32_TOLERANCE, compare_fused

    return compare_fused(
        model_type,
        reference,
        candidate,
        pairs,
        tolerance=FP32_TOLERANCE if tolerance == "fp32" else tolerance,  # type: ignore[arg-type]
        min_agreement=min_agreement,
        model_dir=model_dir,
    )
