"""What the user asked for (``use_tensorrt``, ``precision``, device), carried to the runner hook.

On GPU PaddleX passes ``run_mode='trt_fp16'`` down to the runner builder, but on ``device='cpu'``
PaddleOCR drops ``use_tensorrt`` silently, so the request is also published in a context variable
while PaddleOCR creates its PaddleX pipeline or predictor.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

#: PaddleOCR keyword choosing our engine(s): ``PaddleOCR(..., trt_engine="onnxruntime")``.
#: Not ``engine``: PaddleOCR already has that one (it picks PaddleX's inference engine).
ENGINE_KWARG = "trt_engine"
#: Where the parsed keyword travels inside PaddleOCR's common-args dict.
ENGINES_COMMON_ARG = "paddleocr_trt_engines"
#: PaddleOCR keyword for the pipelined multi-image path: ``PaddleOCR(..., trt_pipeline=False)``.
PIPELINE_KWARG = "trt_pipeline"
PIPELINE_COMMON_ARG = "paddleocr_trt_pipeline"


@dataclass(frozen=True)
class TensorRTRequest:
    precision: str  # "fp16" | "fp32"
    device: str | None  # as the user gave it ("gpu", "gpu:0,1", "cpu", None = default)
    #: engine backends to try in order before native Paddle ("tensorrt", "onnxruntime")
    engines: tuple[str, ...] = ("tensorrt",)
    #: ``trt_pipeline=`` as given (None: not given; ``$PADDLEOCR_TRT_PIPELINE`` decides)
    pipeline: bool | None = None
    #: no engine list was given (no ``trt_engine=``, no ``$PADDLEOCR_TRT_ENGINE``): when no
    #: TensorRT flavor can run, the validated ONNX Runtime engine may follow before native
    #: Paddle (``integration.auto_engine``); an explicit list is strict
    automatic: bool = False


_current: contextvars.ContextVar[TensorRTRequest | None] = contextvars.ContextVar(
    "paddleocr_trt_request", default=None
)


@contextlib.contextmanager
def requested(request: TensorRTRequest | None) -> Iterator[None]:
    token = _current.set(request)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> TensorRTRequest | None:
    return _current.get()


def env_engines() -> tuple[str, ...]:
    """``$PADDLEOCR_TRT_ENGINE`` (checked with every other setting by :func:`settings_ok`)."""
    from ..settings import engines

    return engines()


def settings_ok() -> bool:
    """Every ``PADDLEOCR_TRT_*`` setting is good; else one warning and False: the pipeline
    being created runs natively, as plain PaddleOCR.

    The drop-in must never break the user's program, and an environment variable has no call
    site to raise at; the ``trt_engine``/``trt_pipeline`` keywords, which have one, raise
    ``ValueError`` instead (PaddleOCR's own convention for a bad argument).
    """
    from ..settings import settings_problem

    problem = settings_problem()
    if problem is None:
        return True
    from ..log import warn_once

    warn_once(
        ("bad-setting", problem),
        "%s; paddleocr_trt leaves PaddleOCR to run natively until it is fixed",
        problem,
    )
    return False


def from_common_args(common_args: Mapping[str, Any]) -> TensorRTRequest | None:
    """PaddleOCR's parsed common args (``use_pptrt``/``pptrt_precision``) -> request or None.

    ``trt_engine=...`` is an explicit opt-in of its own: it makes a request even without
    ``use_tensorrt=True``.
    """
    engines = common_args.get(ENGINES_COMMON_ARG)
    if not common_args.get("use_pptrt") and not engines:
        return None
    if not settings_ok():
        return None
    return TensorRTRequest(
        precision=str(common_args.get("pptrt_precision") or "fp32").lower(),
        device=common_args.get("device"),
        engines=tuple(engines) if engines else env_engines(),
        pipeline=common_args.get(PIPELINE_COMMON_ARG),
        automatic=not engines and not _env_engines_given(),
    )


def from_engine_config(engine_config: Mapping[str, Any]) -> TensorRTRequest | None:
    """PaddleX's ``run_mode='trt_fp16'`` (any caller, incl. ``paddlex.create_pipeline``)."""
    run_mode = str(engine_config.get("run_mode") or "")
    if not run_mode.startswith("trt_") or not settings_ok():
        return None
    precision = run_mode[len("trt_") :]
    device_type = engine_config.get("device_type") or "gpu"
    device_id = engine_config.get("device_id")
    device = device_type if device_id is None else f"{device_type}:{device_id}"
    return TensorRTRequest(
        precision=precision,
        device=device,
        engines=env_engines(),
        automatic=not _env_engines_given(),
    )


def _env_engines_given() -> bool:
    from ..settings import engines_given

    return engines_given()
