"""Paddle inference model -> checked ONNX file.

Pipeline: paddle2onnx in a child process (``export_worker``; isolated, with a timeout; retried
once on a repaired PIR program, ``pir_repair``, if the untouched one fails) -> ONNX repair passes
(``repair``) -> constant folding (``simplify``) -> named dynamic axes -> strict
ONNX shape inference + checker -> an ONNX Runtime session running a real-shaped input -> a smoke
comparison with native Paddle's output for the same input (computed in the child). Any failure
raises :class:`ConversionError` naming the model dir, model type, step and versions. Output is
written to a temp dir beside the target and renamed into place only when every check passed.
The child is run by ``export_child``; the checks (shared with an ONNX source) are ``graph_checks``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConversionError, ModelDirError, summary_line
from ...log import get_logger
from ...model_types import ModelFiles, ModelType, locate_model_files
from ...versions import version_of
from .export_child import STEP_TIMEOUT, run_export_child
from .export_worker import STEP_EXPORT, STEP_REFERENCE, STEP_TRANSLATE
from .graph_checks import (
    SMOKE_ATOL,
    SMOKE_SHAPES,
    STEP_CHECK,
    STEP_LOAD_ORT,
    STEP_REPAIR,
    STEP_SIMPLIFY,
    STEP_SMOKE,
    StepFailure,
    check_model,
    name_dynamic_axes,
    run_onnxruntime,
    smoke_compare,
    smoke_input,
    warn_static_axes,
)

log = get_logger("onnx.convert")

#: opset 17 has LayerNormalization (rec's SVTR neck) as one op; TensorRT 10/11 parse it.
DEFAULT_OPSET = 17
DEFAULT_TIMEOUT_S = 900.0


@dataclass
class ConversionResult:
    """A converted, checked ONNX model and how it was made (feeds the cache manifest)."""

    onnx_path: Path
    input_names: list[str]
    output_names: list[str]
    repairs: list[str]
    versions: dict[str, str]
    seconds: float
    model_type: ModelType
    opset: int
    input_shapes: dict[str, list[int | str]] = field(default_factory=dict)
    smoke_max_abs_diff: float | None = None

    @property
    def input_name(self) -> str:
        """The single input of an OCR model (the name docs/ARCHITECTURE.md uses)."""
        return self.input_names[0]


def converter_versions(source_onnx: bool = False) -> dict[str, str]:
    """Versions that determine the converted graph (cache keys include them). An ONNX source
    is not converted: Paddle and paddle2onnx do not enter its graph or its key."""
    return {
        key: version_of(*dists) or "not installed"
        for key, dists in (
            ("paddle", ("paddlepaddle", "paddlepaddle-gpu")),
            ("paddle2onnx", ("paddle2onnx",)),
            ("onnx", ("onnx",)),
            ("onnxruntime", ("onnxruntime", "onnxruntime-gpu")),
        )
        if not (source_onnx and key in ("paddle", "paddle2onnx"))
    }


def convert_to_onnx(
    model_dir: str | Path | ModelFiles,
    output_path: str | Path,
    model_type: str | ModelType,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    opset: int | None = None,
) -> ConversionResult:
    """Convert a Paddle det/rec/cls inference model dir (legacy or PIR) to a checked ONNX file.

    An ONNX model dir (``inference.onnx``) is not converted: see ``source_onnx``.

    Raises ``ModelDirError`` / ``UnsupportedModelTypeError`` for bad arguments and
    ``ConversionError`` when the model cannot be converted into a graph that passes the checks.
    """
    mtype = ModelType.parse(model_type)
    # Absolute paths: the child runs with its work dir as cwd.
    files = (
        model_dir
        if isinstance(model_dir, ModelFiles)
        else locate_model_files(Path(model_dir).expanduser().resolve())
    )
    output = Path(output_path).expanduser().resolve()
    if output.is_dir():
        raise ValueError(f"output path {str(output)!r} is a directory; give a file name (.onnx)")
    opset = int(opset or DEFAULT_OPSET)
    if not files.format.is_paddle:
        raise ModelDirError(
            f"{files.model_dir} is an ONNX model dir: nothing to convert "
            "(backend.onnx.source_onnx.check_source_onnx checks its graph)"
        )
    versions = converter_versions()
    started = time.perf_counter()
    output.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    try:
        result = _convert(files, mtype, output, workdir, timeout_s, opset, versions, started)
    except StepFailure as failure:
        details = failure.details or (failure.reason if "\n" in failure.reason.strip() else "")
        if details:
            log.info("%s: the conversion failed with:\n%s", files.model_dir, details)
        error = ConversionError(
            f"converting {mtype.value} model {str(files.model_dir)!r} to ONNX failed at step "
            f"'{failure.step}' (paddle {versions['paddle']}, paddle2onnx "
            f"{versions['paddle2onnx']}, onnx {versions['onnx']}, onnxruntime "
            f"{versions['onnxruntime']}): {summary_line(failure.reason)}",
            details,
        )
        error.transient = failure.transient  # type: ignore[attr-defined]
        raise error from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log.info(
        "converted %s model %s -> %s in %.1f s (repairs: %s)",
        mtype.value,
        files.model_dir,
        result.onnx_path,
        result.seconds,
        result.repairs or "none",
    )
    return result


def _convert(
    files: ModelFiles,
    mtype: ModelType,
    output: Path,
    workdir: Path,
    timeout_s: float,
    opset: int,
    versions: dict[str, str],
    started: float,
) -> ConversionResult:
    import onnx

    from .naming import name_nodes_like_parser
    from .repair import repair_model
    from .simplify import simplify_model

    raw_path = workdir / "raw.onnx"
    smoke = smoke_input(mtype)
    np.save(workdir / "smoke_input.npy", smoke)
    program_repairs = run_export_child(files, raw_path, workdir, timeout_s, opset)

    try:
        model = onnx.load(str(raw_path))
    except Exception as exc:
        raise StepFailure(STEP_EXPORT, f"paddle2onnx wrote an unreadable model: {exc}") from exc

    try:
        repairs = program_repairs + [str(r) for r in repair_model(model)]
    except Exception as exc:
        raise StepFailure(STEP_REPAIR, f"{type(exc).__name__}: {exc}") from exc

    check_model(model, "after repair")
    try:
        model = simplify_model(model, workdir)
    except Exception as exc:
        raise StepFailure(STEP_SIMPLIFY, f"{type(exc).__name__}: {exc}") from exc
    name_dynamic_axes(model)
    name_nodes_like_parser(model)  # FP32 pins must name TensorRT's layers (naming.py)
    model = check_model(model, "after simplification")
    input_shapes = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in model.graph.input
    }
    warn_static_axes(mtype, files.model_dir, input_shapes)

    staged = workdir / "model.onnx"
    onnx.save(model, str(staged))
    outputs, input_names, output_names = run_onnxruntime(staged, smoke)
    max_diff = smoke_compare(workdir / "reference.npz", outputs)

    os.replace(staged, output)
    return ConversionResult(
        onnx_path=output,
        input_names=input_names,
        output_names=output_names,
        repairs=repairs,
        versions=versions,
        seconds=round(time.perf_counter() - started, 3),
        model_type=mtype,
        opset=max(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=opset
        ),
        input_shapes=input_shapes,
        smoke_max_abs_diff=max_diff,
    )


__all__ = [
    "DEFAULT_OPSET",
    "SMOKE_ATOL",
    "SMOKE_SHAPES",
    "STEP_CHECK",
    "STEP_EXPORT",
    "STEP_LOAD_ORT",
    "STEP_REFERENCE",
    "STEP_REPAIR",
    "STEP_SIMPLIFY",
    "STEP_SMOKE",
    "STEP_TIMEOUT",
    "STEP_TRANSLATE",
    "ConversionResult",
    "StepFailure",
    "convert_to_onnx",
    "converter_versions",
]
