"""An ONNX model dir's ``inference.onnx`` as the source graph: checked, named, not converted.

PaddleX's ``engine="onnxruntime"`` layout holds the graph PaddleOCR runs; converting it again
would need Paddle. Only this changes: dynamic axes and nodes get the names the rest of the
package uses (TensorRT profiles, FP32 pins), and a graph below opset 17 is raised to it with
ONNX's own version converter (the fused graphs' ArgMax and the fp16 rewrite need opset >= 13;
PP-OCRv6 small rec ships opset 11). The weights stay as they are, and the result must give the
source file's outputs in ONNX Runtime (within ``graph_checks.SMOKE_ATOL``; the difference is
recorded).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ...errors import ConversionError
from ...log import get_logger
from ...model_types import ModelFiles, ModelType
from . import convert as cv
from . import graph_checks as gc

log = get_logger("onnx.convert")


def check_source_onnx(
    files: ModelFiles,
    output_path: str | Path,
    model_type: str | ModelType,
    *,
    timeout_s: float | None = None,
) -> cv.ConversionResult:
    """The checked copy of an ONNX model dir's ``inference.onnx`` at ``output_path``; raises
    ``ConversionError`` naming the model, step and versions. ``timeout_s`` is unused (nothing
    runs in a child: no converter is involved); it keeps ``convert_to_onnx``'s signature."""
    del timeout_s
    mtype = ModelType.parse(model_type)
    output = Path(output_path).expanduser().resolve()
    versions = cv.converter_versions(source_onnx=True)
    started = time.perf_counter()
    output.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    try:
        result = prepare_source_onnx(files, mtype, output, workdir, versions, started)
    except gc.StepFailure as failure:
        what = ", ".join(f"{k} {v}" for k, v in versions.items())
        raise ConversionError(
            f"checking the source ONNX of {mtype.value} model {str(files.model_dir)!r} failed "
            f"at step '{failure.step}' ({what}): {failure.reason}"
        ) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log.info(
        "checked the source ONNX of %s model %s -> %s in %.1f s (changes: %s)",
        mtype.value,
        files.model_dir,
        result.onnx_path,
        result.seconds,
        result.repairs or "axis and node names only",
    )
    return result


def prepare_source_onnx(
    files: ModelFiles,
    mtype: ModelType,
    output: Path,
    workdir: Path,
    versions: dict[str, str],
    started: float,
) -> cv.ConversionResult:
    """The checked copy of ``files.program`` at ``output``; raises ``graph_checks.StepFailure``."""
    import onnx

    from .naming import name_nodes_like_parser

    try:
        model = onnx.load(str(files.program))
    except Exception as exc:
        raise gc.StepFailure(gc.STEP_CHECK, f"cannot read {files.program.name}: {exc}") from exc
    repairs: list[str] = []
    opset = _opset(model)
    if opset < cv.DEFAULT_OPSET:
        from onnx import version_converter

        try:
            model = version_converter.convert_version(model, cv.DEFAULT_OPSET)
        except Exception as exc:
            raise gc.StepFailure(
                gc.STEP_REPAIR, f"raising opset {opset} to {cv.DEFAULT_OPSET}: {exc}"
            ) from exc
        repairs.append(f"opset {opset} -> {cv.DEFAULT_OPSET} (onnx.version_converter)")
    checked = gc.check_model(model, f"source {files.program.name}")
    gc.name_dynamic_axes(checked)
    name_nodes_like_parser(checked)
    input_shapes = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in checked.graph.input
    }
    gc.warn_static_axes(mtype, files.model_dir, input_shapes)
    staged = workdir / "model.onnx"
    onnx.save(checked, str(staged))
    smoke_input = gc.smoke_input(mtype)
    source_outputs, _, _ = gc.run_onnxruntime(files.program, smoke_input)
    outputs, input_names, output_names = gc.run_onnxruntime(staged, smoke_input)
    worst = 0.0
    for index, (ref, out) in enumerate(zip(source_outputs, outputs, strict=True)):
        if ref.shape != out.shape:
            raise gc.StepFailure(
                gc.STEP_SMOKE, f"output {index}: source shape {ref.shape} != {out.shape}"
            )
        worst = max(worst, float(np.max(np.abs(ref.astype(np.float64) - out))))
    if worst > gc.SMOKE_ATOL:
        raise gc.StepFailure(
            gc.STEP_SMOKE,
            f"the checked graph's outputs differ from the source's by {worst:.3g} "
            f"(> {gc.SMOKE_ATOL:g})",
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
