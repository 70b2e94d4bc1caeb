"""Paddle inference model -> checked ONNX file.

Pipeline: paddle2onnx in a child process (``export_worker``; isolated, with a timeout; retried
once on a repaired PIR program, ``pir_repair``, if the untouched one fails) -> ONNX repair passes
(``repair``) -> constant folding (``simplify``) -> named dynamic axes -> strict
ONNX shape inference + checker -> an ONNX Runtime session running a real-shaped input -> a smoke
comparison with native Paddle's output for the same input (computed in the child). Any failure
raises :class:`ConversionError` naming the model dir, model type, step and versions. Output is
written to a temp dir beside the target and renamed into place only when every check passed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...childproc import parent_ties
from ...errors import ConversionError, ModelDirError, summary_line
from ...log import get_logger
from ...model_types import ModelFiles, ModelType, locate_model_files
from ...settings import ENV_DISABLE
from ...versions import version_of
from .export_worker import STEP_EXPORT, STEP_REFERENCE, STEP_TRANSLATE

log = get_logger("onnx.convert")

#: opset 17 has LayerNormalization (rec's SVTR neck) as one op; TensorRT 10/11 parse it.
DEFAULT_OPSET = 17
DEFAULT_TIMEOUT_S = 900.0
#: Outputs are probabilities; fp32 Paddle vs ONNX Runtime differ by ~1e-6 on these models.
SMOKE_ATOL = 1e-3

STEP_REPAIR = "repair"
STEP_SIMPLIFY = "simplify"
STEP_CHECK = "check"
STEP_LOAD_ORT = "load-in-onnxruntime"
STEP_SMOKE = "compare-with-paddle"
STEP_TIMEOUT = "timeout"
STEP_WORKER = "worker"  # the child died before saying which step it was in

#: A real-shaped input per model type for the load/run and smoke checks; batch 2 so the dynamic
#: batch axis is exercised, spatial sizes small so it costs well under a second.
SMOKE_SHAPES: dict[ModelType, tuple[int, ...]] = {
    ModelType.DETECTION: (2, 3, 96, 128),
    ModelType.RECOGNITION: (2, 3, 48, 160),
    ModelType.CLASSIFICATION: (2, 3, 48, 192),
}
#: Names given to dynamic NCHW input dims; TensorRT profiles and logs read better with them.
_AXIS_NAMES = {0: "batch", 2: "height", 3: "width"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


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


class _Failure(Exception):
    def __init__(
        self, step: str, reason: str, details: str = "", *, transient: bool = False
    ) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason  # one line
        self.details = details  # the child's traceback and stderr
        #: a timeout or a kill from outside (OOM killer, SIGTERM): may succeed on a retry
        self.transient = transient


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
    except _Failure as failure:
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
    smoke_input = _smoke_input(mtype)
    np.save(workdir / "smoke_input.npy", smoke_input)
    program_repairs = _run_worker(files, raw_path, workdir, timeout_s, opset)

    try:
        model = onnx.load(str(raw_path))
    except Exception as exc:
        raise _Failure(STEP_EXPORT, f"paddle2onnx wrote an unreadable model: {exc}") from exc

    try:
        repairs = program_repairs + [str(r) for r in repair_model(model)]
    except Exception as exc:
        raise _Failure(STEP_REPAIR, f"{type(exc).__name__}: {exc}") from exc

    _check(model, "after repair")
    try:
        model = simplify_model(model, workdir)
    except Exception as exc:
        raise _Failure(STEP_SIMPLIFY, f"{type(exc).__name__}: {exc}") from exc
    _name_dynamic_axes(model)
    name_nodes_like_parser(model)  # FP32 pins must name TensorRT's layers (naming.py)
    model = _check(model, "after simplification")
    input_shapes = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in model.graph.input
    }
    _warn_static_axes(mtype, files.model_dir, input_shapes)

    staged = workdir / "model.onnx"
    onnx.save(model, str(staged))
    outputs, input_names, output_names = _run_onnxruntime(staged, smoke_input)
    max_diff = _smoke_compare(workdir / "reference.npz", outputs)

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


def _smoke_input(mtype: ModelType) -> np.ndarray:
    # Values in the range of ImageNet/0.5-normalised pixels; fixed seed keeps failures repeatable.
    rng = np.random.default_rng(20240601)
    return rng.uniform(-2.0, 2.0, size=SMOKE_SHAPES[mtype]).astype(np.float32)


def _run_worker(
    files: ModelFiles, raw_path: Path, workdir: Path, timeout_s: float, opset: int
) -> list[str]:
    """Run the export child; return the repairs it applied to the Paddle program."""
    status_path = workdir / "status.json"
    request = {
        "program": str(files.program),
        "params": str(files.params),
        "format": files.format.value,
        "model_dir": str(files.model_dir),
        "output": str(raw_path),
        "workdir": str(workdir),
        "opset": opset,
        "status": str(status_path),
        "reference_input": str(workdir / "smoke_input.npy"),
        "reference_output": str(workdir / "reference.npz"),
    }
    request_path = workdir / "request.json"
    request_path.write_text(json.dumps(request), encoding="utf-8")
    env = {
        **os.environ,
        ENV_DISABLE: "1",  # the child must never try to activate TensorRT itself
        "TMPDIR": str(workdir),  # paddle/paddle2onnx scratch files die with the work dir
        "P2O_KEEP_TEMP_MODEL": "0",
        "GLOG_minloglevel": "2",  # glog's spelling; paddle's C++ INFO lines are noise here
    }
    command = [sys.executable, "-m", "paddleocr_trt.backend.onnx.export_worker", str(request_path)]
    log.debug("running %s (timeout %.3g s)", command, timeout_s)
    with parent_ties() as ties:  # the child dies with us, even on SIGKILL (childproc.py)
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**env, **ties.env},
            cwd=workdir,
            start_new_session=True,  # own process group: a timeout kills all it spawned
            pass_fds=ties.pass_fds,
        )
        ties.close_child_end()
        return _wait_worker(proc, status_path, timeout_s)


def _wait_worker(proc: subprocess.Popen[bytes], status_path: Path, timeout_s: float) -> list[str]:
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        _, stderr = proc.communicate()
        status = _read_status(status_path)
        during = f" during '{status['step']}'" if status.get("step") else ""
        raise _Failure(
            STEP_TIMEOUT,
            f"paddle2onnx child process exceeded {timeout_s:g} s{during} and was killed",
            _stderr_tail(stderr),
            transient=True,
        ) from None
    except BaseException:
        # KeyboardInterrupt etc.: the child is in its own session and would outlive us.
        _kill_group(proc)
        proc.communicate()
        raise
    status = _read_status(status_path)
    if proc.returncode == 0 and status.get("step") == "done":
        return list(status.get("repairs") or [])
    step = status.get("step") or STEP_WORKER
    if status.get("error"):
        reason = summary_line(status["error"])
        details = f"{status['error']}\n{status.get('traceback', '')[-1500:]}".strip()
    else:
        reason = f"child process exited with code {proc.returncode} (crashed or killed)"
        details = ""
    killed = proc.returncode < 0 and -proc.returncode in EXTERNAL_SIGNALS
    raise _Failure(step, reason, (details + _stderr_tail(stderr)).strip(), transient=killed)


#: signals that come from outside (OOM killer, kill, Ctrl-C, logout), not from a bug in the model
EXTERNAL_SIGNALS = frozenset(
    {signal.SIGKILL.value, signal.SIGTERM.value, signal.SIGINT.value, signal.SIGHUP.value}
)


def _stderr_tail(stderr: bytes | None) -> str:
    tail = _ANSI.sub("", (stderr or b"").decode("utf-8", "replace")).strip()[-2000:]
    return f"\n--- stderr tail ---\n{tail}" if tail else ""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _read_status(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _check(model: object, when: str) -> object:
    """Strict shape inference + full checker; returns the shape-annotated model."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(
            model, check_type=True, strict_mode=True, data_prop=True
        )
        onnx.checker.check_model(inferred, full_check=True)
    except Exception as exc:
        raise _Failure(STEP_CHECK, f"{when}: {type(exc).__name__}: {exc}") from exc
    return inferred


def _name_dynamic_axes(model: object) -> None:
    for value in model.graph.input:
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value") and index in _AXIS_NAMES:
                dim.dim_param = _AXIS_NAMES[index]
    for value in model.graph.output:
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value"):
                dim.dim_param = "batch" if index == 0 else f"{value.name}_dim{index}"


def _warn_static_axes(
    mtype: ModelType, model_dir: Path, shapes: dict[str, list[int | str]]
) -> None:
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


def _run_onnxruntime(
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
        raise _Failure(STEP_LOAD_ORT, f"session creation: {type(exc).__name__}: {exc}") from exc
    try:
        if len(input_names) != 1:
            raise _Failure(STEP_LOAD_ORT, f"expected one input (x), model has {input_names}")
        outputs = list(session.run(output_names, {input_names[0]: smoke_input}))
    except _Failure:
        raise
    except Exception as exc:
        raise _Failure(
            STEP_LOAD_ORT, f"running a {list(smoke_input.shape)} input: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        del session
    for name, out in zip(output_names, outputs, strict=True):
        if not np.isfinite(out).all():
            raise _Failure(STEP_LOAD_ORT, f"output {name!r} has non-finite values")
    return outputs, input_names, output_names


def _smoke_compare(reference_path: Path, outputs: list[np.ndarray]) -> float:
    with np.load(reference_path) as data:
        reference = [data[f"arr_{i}"] for i in range(len(data.files))]
    if len(reference) != len(outputs):
        raise _Failure(
            STEP_SMOKE, f"Paddle has {len(reference)} outputs, the ONNX model {len(outputs)}"
        )
    worst = 0.0
    for index, (ref, out) in enumerate(zip(reference, outputs, strict=True)):
        if ref.shape != out.shape:
            raise _Failure(
                STEP_SMOKE, f"output {index}: Paddle shape {ref.shape} != ONNX shape {out.shape}"
            )
        diff = float(np.max(np.abs(ref.astype(np.float64) - out.astype(np.float64))))
        worst = max(worst, diff)
    if worst > SMOKE_ATOL:
        raise _Failure(
            STEP_SMOKE,
            f"ONNX Runtime output differs from native Paddle by {worst:.3g} (> {SMOKE_ATOL:g})",
        )
    return worst


__all__ = [
    "DEFAULT_OPSET",
    "STEP_CHECK",
    "STEP_EXPORT",
    "STEP_LOAD_ORT",
    "STEP_REFERENCE",
    "STEP_REPAIR",
    "STEP_SMOKE",
    "STEP_TIMEOUT",
    "STEP_TRANSLATE",
    "ConversionResult",
    "convert_to_onnx",
    "converter_versions",
]
