"""The checks every ONNX graph passes before it is cached, converted or taken from a model dir.

Strict shape inference + the full checker, named dynamic axes, a warning for axes that should be
dynamic but are not, an ONNX Runtime CPU session running a real-shaped input, and the smoke
comparison of its outputs with a reference's. ``convert.py`` (a Paddle program through
paddle2onnx) and ``source_onnx.py`` (an ONNX model dir's own graph) both use them; a failed check
raises :class:`StepFailure` naming its step, which each turns into one ``ConversionError``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...log import get_logger
from ...model_types import ModelType

log = get_logger("onnx.convert")

#: Outputs are probabilities; fp32 Paddle vs ONNX Runtime differ by ~1e-6 on these models.
SMOKE_ATOL = 1e-3

STEP_REPAIR = "repair"
STEP_SIMPLIFY = "simplify"
STEP_CHECK = "check"
STEP_LOAD_ORT = "load-in-onnxruntime"
STEP_SMOKE = "compare-with-paddle"

#: A real-shaped input per model type for the load/run and smoke checks; batch 2 so the dynamic
#: batch axis is exercised, spatial sizes small so it costs well under a second.
SMOKE_SHAPES: dict[ModelType, tuple[int, ...]] = {
    ModelType.DETECTION: (2, 3, 96, 128),
    ModelType.RECOGNITION: (2, 3, 48, 160),
    ModelType.CLASSIFICATION: (2, 3, 48, 192),
}
#: Names given to dynamic NCHW input dims; TensorRT profiles and logs read better with them.
_AXIS_NAMES = {0: "batch", 2: "height", 3: "width"}


class StepFailure(Exception):
    """One step of making a checked ONNX failed (the caller adds model, versions and context)."""

    def __init__(
        self, step: str, reason: str, details: str = "", *, transient: bool = False
    ) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason  # one line
        self.details = details  # the child's traceback and stderr
        #: a timeout or a kill from outside (OOM killer, SIGTERM): may succeed on a retry
        self.transient = transient


def smoke_input(mtype: ModelType) -> np.ndarray:
    # Values in the range of ImageNet/0.5-normalised pixels; fixed seed keeps failures repeatable.
    rng = np.random.default_rng(20240601)
    return rng.uniform(-2.0, 2.0, size=SMOKE_SHAPES[mtype]).astype(np.float32)


def check_model(model: object, when: str) -> object:
    """Strict shape inference + full checker; returns the shape-annotated model."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(
            model, check_type=True, strict_mode=True, data_prop=True
        )
        onnx.checker.check_model(inferred, full_check=True)
    except Exception as exc:
        raise StepFailure(STEP_CHECK, f"{when}: {type(exc).__name__}: {exc}") from exc
    return inferred


def name_dynamic_axes(model: object) -> None:
    for value in model.graph.input:
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value") and index in _AXIS_NAMES:
                dim.dim_param = _AXIS_NAMES[index]
    for value in model.graph.output:
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value"):
                dim.dim_param = "batch" if index == 0 else f"{value.name}_dim{index}"


def warn_static_axes(mtype: ModelType, model_dir: Path, shapes: dict[str, list[int | str]]) -> None:
    expected_dynamic = {
        ModelType.DETECTION: (0, 2, 3),
        ModelType.RECOGNITION: (0, 3),
        ModelType.CLASSIFICATION: (0,),
    }[mtype]
    for name, dims in shapes.items():
        static = [i for i in expected_dynamic if i < len(dims) and isinstance(dims[i], int)]
        if static:
            log.warning(
                "%s model %s: input %r has static axes %s (shape %s); engines will only accept "
                "that size there",
                mtype.value,
                model_dir,
                name,
                static,
                dims,
            )


def run_onnxruntime(
    path: Path, smoke_input: np.ndarray
) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Load and run the graph in a plain ONNX Runtime CPU session (the engine's runner lives
    above conversion, in ``engines/onnxruntime``)."""
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # as the engine's sessions: no initializer chatter
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        input_names = [i.name for i in session.get_inputs()]
        output_names = [o.name for o in session.get_outputs()]
    except Exception as exc:
        raise StepFailure(STEP_LOAD_ORT, f"session creation: {type(exc).__name__}: {exc}") from exc
    try:
        if len(input_names) != 1:
            raise StepFailure(STEP_LOAD_ORT, f"expected one input (x), model has {input_names}")
        outputs = list(session.run(output_names, {input_names[0]: smoke_input}))
    except StepFailure:
        raise
    except Exception as exc:
        raise StepFailure(
            STEP_LOAD_ORT, f"running a {list(smoke_input.shape)} input: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        del session
    for name, out in zip(output_names, outputs, strict=True):
        if not np.isfinite(out).all():
            raise StepFailure(STEP_LOAD_ORT, f"output {name!r} has non-finite values")
    return outputs, input_names, output_names


def smoke_compare(reference_path: Path, outputs: list[np.ndarray]) -> float:
    with np.load(reference_path) as data:
        reference = [data[f"arr_{i}"] for i in range(len(data.files))]
    if len(reference) != len(outputs):
        raise StepFailure(
            STEP_SMOKE, f"Paddle has {len(reference)} outputs, the ONNX model {len(outputs)}"
        )
    worst = 0.0
    for index, (ref, out) in enumerate(zip(reference, outputs, strict=True)):
        if ref.shape != out.shape:
            raise StepFailure(
                STEP_SMOKE, f"output {index}: Paddle shape {ref.shape} != ONNX shape {out.shape}"
            )
        diff = float(np.max(np.abs(ref.astype(np.float64) - out.astype(np.float64))))
        worst = max(worst, diff)
    if worst > SMOKE_ATOL:
        raise StepFailure(
            STEP_SMOKE,
            f"ONNX Runtime output differs from native Paddle by {worst:.3g} (> {SMOKE_ATOL:g})",
        )
    return worst
