"""The patches themselves, applied once per target when the target module is imported.

Two layers are touched, both read in paddleocr 3.7 / paddlex 3.7 source:

* PaddleOCR's argument layer: accept PaddleOCR 2.x's ``use_gpu`` (mapped to ``device``) and an
  upper-case ``precision``; publish the ``use_tensorrt`` request while a pipeline/predictor is
  created (``device='cpu'`` would otherwise drop it silently).
* PaddleX's Paddle static engine: its default runner builder is where every det/rec/cls model of
  every pipeline gets its forward runner. Ours decides there: TensorRT engine, or native Paddle.
* PaddleX's ONNX Runtime engine (``engine="onnxruntime"``, ONNX model dirs, no Paddle needed):
  the same decision, with PaddleX's own ``ONNXRuntimeRunner`` as the native runner. Without
  Paddle installed, ``use_tensorrt=True`` with no ``engine`` picks this engine (stock PaddleOCR
  would fail to import Paddle).
"""

from __future__ import annotations

import functools
import sys
import threading
from typing import Any

from ..integration import request as trt_request
from ..log import get_logger, warn_once
from .compat import installed_versions, unsupported_reason

log = get_logger("activation")
_lock = threading.RLock()  # re-entrant: a patch may import a watched module
_applied: set[str] = set()
_PATCHED_ATTR = "__paddleocr_trt_patched__"


def apply(target: str) -> bool:
    """Patch ``target`` ("paddleocr" or "paddlex_engine") once; False when refused."""
    with _lock:
        if target in _applied:
            return True
        reason = unsupported_reason(installed_versions())
        if reason is not None:
            warn_once(("unsupported-versions",), "%s", reason)
            return False
        {
            "paddleocr": _patch_paddleocr,
            "paddlex_engine": _patch_paddlex_engine,
            "paddlex_onnxruntime_engine": _patch_paddlex_onnxruntime_engine,
            "paddlex_ocr_pipeline": _patch_ocr_pipeline,
        }[target]()
        _applied.add(target)
        log.debug("patched %s", target)
        return True


def applied() -> frozenset[str]:
    return frozenset(_applied)


# --- PaddleOCR argument layer ---------------------------------------------------------------


def normalize_common_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """PaddleOCR 2.x spellings PaddleOCR 3.x rejects, mapped to 3.x ones (returns a new dict)."""
    kwargs = dict(kwargs)
    if "use_gpu" in kwargs:
        use_gpu = kwargs.pop("use_gpu")
        if kwargs.get("device") is None:
            kwargs["device"] = "gpu" if use_gpu else "cpu"
        else:
            log.debug("use_gpu=%r ignored: device=%r given", use_gpu, kwargs["device"])
    precision = kwargs.get("precision")
    if isinstance(precision, str):
        kwargs["precision"] = precision.strip().lower()
    return kwargs


def _wrap_parse_common_args(original: Any) -> Any:
    if getattr(original, _PATCHED_ATTR, False):
        return original

    @functools.wraps(original)
    def parse_common_args(kwargs: dict[str, Any], *args: Any, **kw: Any) -> Any:
        kwargs = normalize_common_kwargs(kwargs)
        engines = kwargs.pop(trt_request.ENGINE_KWARG, None)
        if engines is not None:
            from ..settings import parse_engines

            # A ValueError here is PaddleOCR's own convention for a bad argument.
            engines = parse_engines(engines, source=trt_request.ENGINE_KWARG)
        pipeline = kwargs.pop(trt_request.PIPELINE_KWARG, None)
        if pipeline is not None and not isinstance(pipeline, bool):
            raise ValueError(f"{trt_request.PIPELINE_KWARG}={pipeline!r}: use True or False")
        kwargs = onnxruntime_engine_without_paddle(kwargs, engines is not None)
        parsed = original(kwargs, *args, **kw)
        if engines is not None:
            parsed[trt_request.ENGINES_COMMON_ARG] = engines
        if pipeline is not None:
            parsed[trt_request.PIPELINE_COMMON_ARG] = pipeline
        return parsed

    setattr(parse_common_args, _PATCHED_ATTR, True)
    return parse_common_args


def onnxruntime_engine_without_paddle(kwargs: dict[str, Any], engines_given: bool) -> dict:
    """``use_tensorrt=True`` (or ``trt_engine=``) with no ``engine`` where Paddle is not
    installed: PaddleX's ONNX Runtime engine (ONNX model dirs), said once. Stock PaddleOCR would
    pick the Paddle engine and fail to import it."""
    if kwargs.get("engine") is not None or not (kwargs.get("use_tensorrt") or engines_given):
        return kwargs
    from ..model_types import paddle_installed

    if paddle_installed():
        return kwargs
    warn_once(
        ("engine-onnxruntime-without-paddle",),
        "paddlepaddle is not installed: using PaddleX's ONNX Runtime engine "
        '(engine="onnxruntime"; model dirs need inference.onnx + inference.yml)',
    )
    return {**kwargs, "engine": "onnxruntime"}


def _wrap_creator(original: Any) -> Any:
    """Run ``_create_paddlex_pipeline``/``_create_paddlex_predictor`` inside the request context."""
    if getattr(original, _PATCHED_ATTR, False):
        return original

    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        request = trt_request.from_common_args(getattr(self, "_common_args", {}) or {})
        with trt_request.requested(request):
            return original(self, *args, **kwargs)

    setattr(create, _PATCHED_ATTR, True)
    return create


def _patch_paddleocr() -> None:
    import paddleocr._common_args as common_args_mod
    import paddleocr._models.base as models_base
    import paddleocr._pipelines.base as pipelines_base

    wrapped = _wrap_parse_common_args(common_args_mod.parse_common_args)
    # Imported by name into each base module, so each binding is replaced.
    for module in (common_args_mod, models_base, pipelines_base):
        if hasattr(module, "parse_common_args"):
            module.parse_common_args = wrapped
    wrapper_cls = pipelines_base.PaddleXPipelineWrapper
    wrapper_cls._create_paddlex_pipeline = _wrap_creator(wrapper_cls._create_paddlex_pipeline)
    predictor_cls = models_base.PaddleXPredictorWrapper
    predictor_cls._create_paddlex_predictor = _wrap_creator(predictor_cls._create_paddlex_predictor)
    # The engine module may already be loaded (paddleocr imports paddlex eagerly in some paths).
    for module, target, patch in (
        ("paddlex.inference.models.engines.paddle", "paddlex_engine", _patch_paddlex_engine),
        (
            "paddlex.inference.models.engines.onnxruntime",
            "paddlex_onnxruntime_engine",
            _patch_paddlex_onnxruntime_engine,
        ),
    ):
        if module in sys.modules and target not in _applied:
            patch()
            _applied.add(target)


def _patch_ocr_pipeline() -> None:
    from ..pipelined.patch import patch_ocr_pipeline

    patch_ocr_pipeline()


# --- PaddleX runner layer -------------------------------------------------------------------


def _patch_paddlex_engine() -> None:
    from paddlex.inference.models.engines.paddle import PaddleStaticEngine

    _patch_runner_engine(PaddleStaticEngine, model_source=None)


def _patch_paddlex_onnxruntime_engine() -> None:
    from paddlex.inference.models.engines.onnxruntime import ONNXRuntimeEngine

    # The user's baseline here is the dir's inference.onnx: it is the source, whatever else
    # the dir holds.
    _patch_runner_engine(ONNXRuntimeEngine, model_source="onnx")


def _patch_runner_engine(engine_cls: Any, *, model_source: str | None) -> None:
    """Route ``engine_cls``'s default runner builder through ``build_runner`` (our decision,
    the engine's own runner as the native one) and let its validation accept our runners."""
    from ..integration.report import is_our_runner
    from ..integration.runner_factory import build_runner

    original_builder_factory = engine_cls.get_default_runner_builder
    original_validate = engine_cls.validate_runner
    if getattr(original_builder_factory, _PATCHED_ATTR, False):
        return

    @functools.wraps(original_builder_factory)
    def get_default_runner_builder(self: Any) -> Any:
        native_builder = original_builder_factory(self)

        def runner_builder(**kwargs: Any) -> Any:
            return build_runner(native_builder, model_source=model_source, **kwargs)

        return runner_builder

    @functools.wraps(original_validate)
    def validate_runner(self: Any, runner: Any) -> None:
        if is_our_runner(runner):
            return
        original_validate(self, runner)

    setattr(get_default_runner_builder, _PATCHED_ATTR, True)
    engine_cls.get_default_runner_builder = get_default_runner_builder
    engine_cls.validate_runner = validate_runner
