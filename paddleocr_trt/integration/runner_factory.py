"""The runner builder PaddleX calls for every Paddle static model, with our decision inside.

Contract (read in paddlex 3.7 ``engines/paddle.py``): keyword arguments ``model_name``,
``model_dir``, ``model_config`` (parsed inference.yml), ``engine_config`` (``run_mode``,
``device_type``, ``device_id``...), ``default_builder``; returns an ``InferenceRunner``.
Whatever happens in here, the user gets a working runner: TensorRT if possible, else native.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from packaging.version import Version

from ..engines import registry
from ..engines.contract import LoadRequest, Target
from ..errors import ModelDirError
from ..log import get_logger, warn_once
from ..model_types import (
    ModelFiles,
    ModelFormat,
    ModelType,
    locate_model_files,
    model_type_from_config,
    model_type_from_name,
)
from ..versions import version_of
from . import request as trt_request
from .decision import Availability, decide_engine, target_of
from .report import BackendDecision, TimedRunner, record

log = get_logger("integration")


def _paddle_version() -> Version | None:
    found = version_of("paddlepaddle-gpu", "paddlepaddle")
    try:
        return Version(found) if found else None
    except ValueError:  # InvalidVersion: an odd local build; no version-based settings
        return None


def native_engine_config(
    engine_config: Mapping[str, Any], model_dir: Path | None, files: ModelFiles | None = None
) -> dict:
    """Settings under which native Paddle inference works for this model.

    A Paddle-TRT run mode becomes plain Paddle (the user asked for *our* TensorRT, not Paddle's
    uncached one). On CPU, paddle >= 3.3 crashes in oneDNN on legacy-format PP-OCR det models
    (``ConvertPirAttribute2RuntimeAttribute``), so oneDNN is not forced on those.
    """
    config = dict(engine_config)
    if str(config.get("run_mode", "")).startswith("trt_"):
        config["run_mode"] = "paddle"
    on_cpu = str(config.get("device_type", "")).lower() == "cpu"
    uses_onednn = config.get("run_mode") in (None, "mkldnn", "mkldnn_bf16")
    paddle_version = _paddle_version()
    if on_cpu and uses_onednn and model_dir is not None and paddle_version is not None:
        try:
            files = files or locate_model_files(model_dir)
            legacy = files.format is ModelFormat.LEGACY
        except Exception:
            legacy = False
        if legacy and paddle_version >= Version("3.3"):
            config["run_mode"] = "paddle"
            log.info(
                "oneDNN disabled for %s: paddle %s crashes on legacy models",
                model_dir,
                paddle_version,
            )
    return config


def _model_type(model_name: str, model_files: ModelFiles | None) -> ModelType | None:
    """What the model is, by its inference.yml's post-processor (so PP-OCRv5/v6 and the
    document-orientation classifier are recognised whatever their names), else by its name."""
    if model_files is not None:
        try:
            found = model_type_from_config(model_files)
        except ModelDirError:  # an unreadable inference.yml: Paddle will say so itself
            found = None
        if found is not None:
            return found
    return model_type_from_name(model_name)


def _resolved(model_files: ModelFiles | None, model_type: ModelType | None) -> Any:
    """The model as one value for the engine paths (None when it cannot be resolved)."""
    if model_files is None or model_type is None:
        return None
    from ..model_resolve import ResolvedModel

    try:
        config = model_files.config_data()
    except ModelDirError:
        return None
    return ResolvedModel(model_files, model_type, config)


def build_runner(
    native_builder: Callable[..., Any], *, model_source: str | None = None, **kwargs: Any
) -> Any:
    """Try each requested engine in order, then native Paddle; one warning per step moved on.

    ``native_builder`` is the PaddleX engine's own (Paddle Inference, or its ONNX Runtime
    runner for ``engine="onnxruntime"``, then ``model_source="onnx"``: the dir's
    inference.onnx is the model's source whatever else the dir holds).
    """
    model_name: str = kwargs["model_name"]
    model_dir: Path | None = kwargs.get("model_dir")
    engine_config: Mapping[str, Any] = kwargs.get("engine_config") or {}
    request = trt_request.current() or trt_request.from_engine_config(engine_config)
    if request is None:
        return native_builder(**kwargs)
    # what runs when no engine of ours does: Paddle Inference, or PaddleX's ONNX Runtime runner
    native, native_step = (
        ("paddle", "running native Paddle inference")
        if model_source is None
        else ("paddlex-onnxruntime", "running PaddleX's own ONNX Runtime runner")
    )

    model_files = None
    if model_dir is not None:
        # Say precisely what is wrong with a broken model dir, in the log: the exception the
        # user gets must stay the one plain PaddleOCR raises, so Paddle reports it.
        try:
            model_files = locate_model_files(model_dir, model_source)
        except ModelDirError as exc:
            log.error("%s: %s; leaving the error to Paddle", model_name, exc)
            return native_builder(**kwargs)
    model_type = _model_type(model_name, model_files)
    resolved = _resolved(model_files, model_type)
    if model_type is None:
        reason = "not a text detection, recognition or classification model"
        warn_once(
            ("not-an-ocr-model", model_name),
            "%s: %s (by its inference.yml); running it as PaddleOCR would.",
            model_name,
            reason,
        )
        record(BackendDecision(model_name, str(model_dir) if model_dir else None, native, reason))
        return native_builder(**kwargs)

    def native_factory() -> Any:
        return native_builder(
            **{
                **kwargs,
                "engine_config": native_engine_config(engine_config, model_dir, model_files),
            }
        )

    from .auto_engine import automatic_engine

    auto = automatic_engine(request, engine_config)
    engines = request.engines + ((auto.engine,) if auto.engine else ())
    reasons: list[str] = []
    for position, engine in enumerate(engines):
        label = registry.label(engine)
        status = decide_engine(engine, request, engine_config)
        if status.ok and model_dir is None:
            status = Availability(False, "no-model-dir", "PaddleX passed no model directory")
        if status.ok:
            from .engine_path import engine_runner  # only when tried: numpy & co

            try:
                runner, description = engine_runner(
                    engine,
                    model_name=model_name,
                    # the model resolved here, once (path-like: ``Path(model_dir)`` works)
                    model_dir=resolved or Path(model_dir),  # type: ignore[arg-type]
                    model_type=model_type,
                    request=request,
                    engine_config=engine_config,
                    native_factory=native_factory,
                )
            except Exception as exc:  # the user's program never breaks because of us
                status = Availability(
                    False,
                    f"{engine}-failed:{type(exc).__name__}",
                    f"the {label} engine could not be prepared: {exc}",
                )
            else:
                record(
                    BackendDecision(
                        model_name, str(model_dir), engine, description, request.precision
                    )
                )
                return _ours(TimedRunner(runner, model_name, engine))
        reasons.append(status.message() if len(engines) == 1 else f"{label}: {status.message()}")
        later = engines[position + 1 :]
        next_step = f"trying the {registry.label(later[0])} engine" if later else native_step
        if later and later[0] == auto.engine:
            next_step += f" ({auto.why})"
        elif not later and request.automatic and auto.engine is None:
            next_step += f" (not ONNX Runtime: {auto.why})"
        warn_once(
            (engine, status.code, model_name),
            "%s: %s; %s instead.",
            model_name,
            status.message(),
            next_step,
        )
    record(
        BackendDecision(
            model_name, str(model_dir) if model_dir else None, native, "; ".join(reasons), None
        )
    )
    runner = _native_engine_runner(native_factory, model_name, model_type, request, engine_config)
    return _ours(TimedRunner(runner, model_name, native))


def _native_engine_runner(
    native_factory: Callable[[], Any],
    model_name: str,
    model_type: ModelType,
    request: trt_request.TensorRTRequest,
    engine_config: Mapping[str, Any],
) -> Any:
    """The last step, through the native engine's plug-in (``engines/paddle``): PaddleX's own
    predictor (Paddle Inference, or its ONNX Runtime runner for an ONNX source), as made by
    ``native_factory``. The device is PaddleX's to choose: a request this engine cannot read
    a device from is no reason not to run natively."""
    try:
        target = target_of(request, engine_config)
    except (TypeError, ValueError):
        target = Target("cpu", 0)
    load = LoadRequest(
        name=model_name,
        model_type=model_type,
        target=target,
        precision=request.precision,
        options=None,  # no recipe: native Paddle has no artifact
        engine_config=engine_config,
        fallback=native_factory(),
    )
    return registry.engine("paddle").load(None, load)


def _ours(runner: TimedRunner) -> TimedRunner:
    """Make sure the predictor that receives ``runner`` gets adapted and timed."""
    try:
        from .predictor_hook import install

        install()
    except Exception as exc:  # an unexpected PaddleX layout: runners still work, unadapted
        warn_once(("predictor-hook",), "paddleocr_trt could not hook PaddleX predictors: %s", exc)
    return runner
