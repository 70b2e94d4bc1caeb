"""An ONNX model dir's ``inference.onnx`` as the source graph: checked, named, not converted.

PaddleX's ``engine="onnxruntime"`` layout holds the graph PaddleOCR runs; converting it again
would need Paddle. Only this changes: dynamic axes and nodes get the names the rest of the
package uses (TensorRT profiles, FP32 pins), and a graph below opset 17 is raised to it with
ONNX's own version converter (the fused graphs' ArgMax and the fp16 rewrite need opset >= 13;
PP-OCRv6 small rec ships opset 11). The weights stay as they are, and the result must give the
source file's outputs in ONNX Runtime (within ``convert.SMOKE_ATOL``; the difference is
recorded).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...model_types import ModelFiles, ModelType
from . import convert as cv

#: bump when what is done to a source graph changes (it is part of the ONNX cache key)
SOURCE_ONNX_RECIPE = 1


def prepare_source_onnx(
    files: ModelFiles,
    mtype: ModelType,
    output: Path,
    workdir: Path,
    versions: dict[str, str],
    started: float,
) -> cv.ConversionResult:
    """The checked copy of ``files.program`` at ``output``; raises ``convert._Failure``."""
    import onnx

    from .naming import name_nodes_like_parser

    try:
        model = onnx.load(str(files.program))
    except Exception as exc:
        raise cv._Failure(cv.STEP_CHECK, f"cannot read {files.program.name}: {exc}") from exc
    repairs: list[str] = []
    opset = _opset(model)
    if opset < cv.DEFAULT_OPSET:
        from onnx import version_converter

        try:
            model = version_converter.convert_version(model, cv.DEFAULT_OPSET)
        except Exception as exc:
            raise cv._Failure(
                cv.STEP_REPAIR, f"raising opset {opset} to {cv.DEFAULT_OPSET}: {exc}"
            ) from exc
        repairs.append(f"opset {opset} -> {cv.DEFAULT_OPSET} (onnx.version_converter)")
    checked = cv._check(model, f"source {files.program.name}")
    cv._name_dynamic_axes(checked)
    name_nodes_like_parser(checked)
    input_shapes = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in checked.graph.input
    }
    cv._warn_static_axes(mtype, files.model_dir, input_shapes)
    staged = workdir / "model.onnx"
    onnx.save(checked, str(staged))
    smoke_input = cv._smoke_input(mtype)
    source_outputs, _, _ = cv._run_onnxruntime(files.program, smoke_input)
    outputs, input_names, output_names = cv._run_onnxruntime(staged, smoke_input)
    worst = 0.0
    for index, (ref, out) in enumerate(zip(source_outputs, outputs, strict=True)):
        if ref.shape != out.shape:
            raise cv._Failure(
                cv.STEP_SMOKE, f"output {index}: source shape {ref.shape} != {out.shape}"
            )
        worst = max(worst, float(np.max(np.abs(ref.astype(np.float64) - out))))
    if worst > cv.SMOKE_ATOL:
        raise cv._Failure(
            cv.STEP_SMOKE,
            f"the checked graph's outputs differ from the source's by {worst:.3g} "
            f"(> {cv.SMOKE_ATOL:g})",
        )
    staged.replace(output)
    return cv.ConversionResult(
        onnx_path=output,
        input_names=input_names,
        output_names=output_names,
        repairs=repairs,
        versions=versions,
        seconds=round(time.perf_counter() - started, 3),
        model_type=mtype,
        opset=_opset(checked),
        input_shapes=input_shapes,
        smoke_max_abs_diff=worst,
    )


def _opset(model: object) -> int:
    return max(
        (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),  # type: ignore[attr-defined]
        default=0,
    )
