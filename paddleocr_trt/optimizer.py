"""Public Python API: ``TensorRTOptimizer`` (optimize, convert, benchmark), as in the spec.

Environmental failures (TensorRT missing, conversion impossible, validation failed, OOM) return
``None`` and leave the reason in ``last_failure`` (and the log), so a caller can keep going on
native Paddle. Wrong arguments (a model dir that is not one, an unknown model type) raise: they
are bugs in the caller, not conditions of the machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .backend.base import BaseRunner
from .benchmarking import (
    BenchmarkResult,
    benchmark_input,
    engine_input,
    jsonable,
    latency_stats,
    sweep,
)
from .cache.safety import check_output_path, copy_output
from .cache.store import CacheEntry, EngineCache
from .engines import registry
from .errors import PaddleOCRTRTError, ValidationFailedError
from .log import get_logger
from .model_resolve import ResolvedModel, resolve_model
from .model_types import ModelType
from .pipeline import ArtifactPipeline, PipelineOptions
from .settings import (
    DEFAULT_MIN_AGREEMENT,
    SettingsError,
    check_build_timeout_s,
    check_directory,
    check_workspace_gb,
    validate_settings,
)
from .settings import workspace_gb as env_workspace_gb

log = get_logger("optimizer")


@dataclass
class OptimizationResult:
    model_type: str
    model_dir: Path
    engine_path: Path
    onnx_path: Path | None
    precision: str
    profiles: list[dict[str, Any]]
    build_seconds: float
    from_cache: bool
    baseline_latency_ms: float | None
    optimized_latency_ms: float | None
    speedup_factor: float | None
    optimized_accuracy: float
    validation_report: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass
class ConvertReport:
    model_type: str
    model_dir: Path
    passed: bool
    onnx_path: Path | None = None
    from_cache: bool = False
    validation: dict[str, Any] | None = None
    conversion: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    #: the PaddleX ONNX model dir written (``to_model_dir``), None when none was asked for
    model_dir_written: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


class TensorRTOptimizer:
    def __init__(
        self,
        precision: str = "FP16",
        workspace_gb: float | None = None,
        cache_dir: str | Path | None = None,
        *,
        profiles: dict[ModelType, list[dict[str, Any]]] | None = None,
        min_agreement: float = DEFAULT_MIN_AGREEMENT,
        device_id: int = 0,
        optimization_level: int | None = None,
        validation_images: Sequence[str | Path] | None = None,
        build_timeout_s: float | None = None,
    ) -> None:
        # every PADDLEOCR_TRT_* setting checked once, here; then the arguments, which win
        validate_settings()
        workspace_gb = (
            env_workspace_gb() if workspace_gb is None else check_workspace_gb(workspace_gb)
        )
        if build_timeout_s is not None:
            build_timeout_s = check_build_timeout_s(build_timeout_s)
        if cache_dir is not None:
            cache_dir = check_directory(cache_dir, "cache_dir")
        if isinstance(min_agreement, bool) or not isinstance(min_agreement, int | float):
            raise SettingsError(f"min_agreement must be a number in [0, 1], got {min_agreement!r}")
        if not 0.0 <= min_agreement <= 1.0:  # also false for nan
            raise SettingsError(f"min_agreement must be in [0, 1], got {min_agreement!r}")
        for image in validation_images or ():
            if not Path(image).is_file():
                raise SettingsError(f"validation image {str(image)!r} is not a file")
        self.options = PipelineOptions(
            precision=str(precision).lower(),
            workspace_bytes=int(workspace_gb * (1 << 30)),
            optimization_level=optimization_level,
            profiles=profiles,
            min_agreement=min_agreement,
            validation_images=tuple(Path(p) for p in validation_images)
            if validation_images
            else None,
            device_id=device_id,
            build_timeout_s=build_timeout_s,
        )
        self.cache = EngineCache(cache_dir)
        self.pipeline = ArtifactPipeline(self.cache, self.options)
        self.last_failure: str | None = None

    def _fail(self, reason: str) -> None:
        self.last_failure = reason
        log.warning("%s", reason)

    def tensorrt_unavailable_reason(self) -> str | None:
        from .integration.decision import cuda_status, tensorrt_status

        for status in (tensorrt_status(), cuda_status()):
            if not status.ok:
                return status.message()
        return None

    # -- optimize -----------------------------------------------------------------------------

    def optimize_model(
        self,
        paddle_model_path: str | Path,
        output_path: str | Path | None = None,
        model_type: str | ModelType = "detection",
    ) -> OptimizationResult | None:
        self.last_failure = None
        model = resolve_model(paddle_model_path, model_type)  # once: everything below takes it
        model_dir, mtype = model.model_dir, model.model_type
        if output_path is not None:
            check_output_path(Path(output_path))
        reason = self.tensorrt_unavailable_reason()
        if reason is not None:
            self._fail(f"cannot optimize {model_dir}: {reason}")
            return None
        try:
            artifact = self.pipeline.engine(model, mtype)
        except SettingsError:  # e.g. a workspace beyond the GPU's memory: the caller's to fix
            raise
        except PaddleOCRTRTError as exc:  # conversion, validation, OOM, cache, build, memo
            self._fail(f"optimizing {mtype.value} model {model_dir} failed: {exc}")
            return None
        except Exception as exc:  # e.g. a binding's RuntimeError: the caller keeps going
            self._fail(
                f"optimizing {mtype.value} model {model_dir} failed: {type(exc).__name__}: {exc}"
            )
            return None
        engine_path = artifact.path
        if output_path is not None:
            engine_path = copy_output(artifact.entry.read_artifact(), Path(output_path))
        baseline_ms, optimized_ms = self._latency_pair(model, mtype, artifact.entry)
        report = artifact.validation or {}
        meta = artifact.entry.metadata
        return OptimizationResult(
            model_type=mtype.value,
            model_dir=model_dir,
            engine_path=engine_path,
            onnx_path=artifact.extra["onnx"].path if "onnx" in artifact.extra else None,
            precision=str(meta.get("precision", self.options.precision)),
            profiles=list(
                (artifact.entry.key.to_dict() if artifact.entry.key else {}).get("profiles", [])
            ),
            build_seconds=float(artifact.entry.build_seconds or 0.0),
            from_cache=artifact.from_cache,
            baseline_latency_ms=baseline_ms,
            optimized_latency_ms=optimized_ms,
            speedup_factor=(baseline_ms / optimized_ms) if baseline_ms and optimized_ms else None,
            optimized_accuracy=float(report.get("agreement", 0.0)),
            validation_report=report,
        )

    def _latency_pair(
        self, model_dir: ResolvedModel, mtype: ModelType, entry: CacheEntry
    ) -> tuple[float | None, float | None]:
        tensorrt = registry.engine("tensorrt")
        images = self.pipeline.validation_images()
        batch = [benchmark_input(images, model_dir, mtype, 1)]
        try:
            with self._native_runner(model_dir) as native:
                baseline = latency_stats(native, batch, warmup=2, iterations=10)["mean"]
            # the plan's bytes as the cache checked them, never re-opened by path
            plan = entry.read_artifact()
            with tensorrt.plan_runner(plan, device_id=self.options.device_id) as trt:
                batch = [engine_input(trt, batch[0], model_dir)]
                optimized = latency_stats(trt, batch, warmup=5, iterations=50)["mean"]
        except Exception as exc:  # latency is a nicety; the engine itself is fine
            log.warning("latency measurement failed: %s", exc)
            return None, None
        return baseline, optimized

    # -- convert ------------------------------------------------------------------------------

    def convert_model(
        self,
        paddle_model_path: str | Path,
        output_path: str | Path | None = None,
        model_type: str | ModelType = "detection",
        *,
        to_model_dir: str | Path | None = None,
    ) -> ConvertReport:
        """Paddle -> ONNX validated on ONNX Runtime against native Paddle; cached. CPU-only.
        An ONNX model dir is not converted: its source graph is checked and named, and
        validated against ONNX Runtime running it.

        ``to_model_dir``: also write the validated graph with the model's inference.yml as a
        PaddleX ONNX model dir there (``inference.onnx`` + ``inference.yml``), which PaddleOCR's
        ``engine="onnxruntime"`` and this package run without Paddle installed."""
        from .onnx_model_dir import check_model_dir_output, write_onnx_model_dir

        self.last_failure = None
        model = resolve_model(paddle_model_path, model_type)  # once: everything below takes it
        model_dir, mtype = model.model_dir, model.model_type
        if output_path is not None:
            check_output_path(Path(output_path))
        if to_model_dir is not None:
            check_model_dir_output(Path(to_model_dir))
        try:
            artifact = self.pipeline.onnx(model, mtype)
        except ValidationFailedError as exc:
            self._fail(str(exc))
            report = exc.report
            validation = report.to_dict() if hasattr(report, "to_dict") else report
            return ConvertReport(
                mtype.value, model_dir, False, validation=validation, error=str(exc)
            )
        except PaddleOCRTRTError as exc:
            self._fail(str(exc))
            return ConvertReport(mtype.value, model_dir, False, error=str(exc))
        onnx_path = artifact.path
        if output_path is not None:
            onnx_path = copy_output(artifact.entry.read_artifact(), Path(output_path))
        written = None
        if to_model_dir is not None:
            data = artifact.entry.read_artifact()  # the checked bytes, not the path again
            written = write_onnx_model_dir(data, model, Path(to_model_dir)).model_dir
        return ConvertReport(
            model_type=mtype.value,
            model_dir=model_dir,
            passed=True,
            onnx_path=onnx_path,
            from_cache=artifact.from_cache,
            validation=artifact.validation,
            conversion=dict(artifact.entry.metadata),
            model_dir_written=written,
        )

    # -- benchmark ----------------------------------------------------------------------------

    def benchmark_performance(
        self,
        engine_path: str | Path | None = None,
        test_batch_sizes: Sequence[int] = (1, 8, 16, 32, 50),
        *,
        model_dir: str | Path | None = None,
        model_type: str | ModelType | None = None,
        warmup: int = 3,
        iterations: int = 20,
        include_native: bool = True,
    ) -> BenchmarkResult | None:
        """Latency (mean/p50/p90/p99 ms) and images/s per batch size; native measured alongside.

        Without an engine (or without TensorRT here) only native Paddle is measured, and the
        result says so in ``note``.
        """
        self.last_failure = None
        entry_meta = self._engine_metadata(engine_path) if engine_path else {}
        model_dir = model_dir or entry_meta.get("model_dir")
        model_type = model_type or entry_meta.get("model_type")
        if model_dir is None or model_type is None:
            raise ValueError(
                "benchmark_performance needs model_dir and model_type (they are read from the "
                "cache manifest when engine_path is a cached engine)"
            )
        model = resolve_model(model_dir, model_type)
        mtype = model.model_type
        batches = [int(b) for b in test_batch_sizes]
        if any(b < 1 for b in batches):
            raise ValueError(f"batch sizes must be >= 1, got {batches}")
        native = None
        if include_native or engine_path is None:
            with self._native_runner(model) as runner:
                native, _ = sweep(
                    runner,
                    self.pipeline.validation_images(),
                    model,
                    mtype,
                    batches,
                    warmup,
                    iterations,
                )
        reason = self.tensorrt_unavailable_reason() if engine_path else "no engine given"
        if engine_path is None or reason is not None:
            note = f"TensorRT not measured: {reason}; native Paddle only"
            log.warning("%s", note)
            assert native is not None
            native.note = note
            return native
        from .backend.cuda.runtime import mem_get_info

        tensorrt = registry.engine("tensorrt")
        try:
            free_before, _ = mem_get_info(self.options.device_id)
            with tensorrt.plan_runner(Path(engine_path), device_id=self.options.device_id) as trt:
                result, min_free = sweep(
                    trt,
                    self.pipeline.validation_images(),
                    model,
                    mtype,
                    batches,
                    warmup,
                    iterations,
                    track_gpu=True,
                    device_id=self.options.device_id,
                )
            if min_free is not None:
                result.peak_gpu_memory_bytes = max(0, free_before - min_free)
        except PaddleOCRTRTError as exc:  # OutOfMemoryError included
            self._fail(f"benchmark of {engine_path} failed: {exc}")
            return None
        result.engine_path = Path(engine_path)
        result.backend = "tensorrt"
        result.baseline = native
        return result

    def _engine_metadata(self, engine_path: str | Path) -> dict[str, Any]:
        import json

        manifest = Path(engine_path).parent / "manifest.json"
        if not manifest.is_file():
            return {}
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        meta = data.get("metadata")
        meta = dict(meta) if isinstance(meta, dict) else {}
        key = data.get("key")
        meta.setdefault("model_type", key.get("model_type") if isinstance(key, dict) else None)
        return meta

    def _native_runner(self, model: ResolvedModel) -> BaseRunner:
        """What the model runs on without us: Paddle Inference, or for an ONNX model dir
        ONNX Runtime on its source graph (PaddleOCR's ``engine="onnxruntime"``)."""
        from .backend.cuda.runtime import cuda_available

        if model.is_onnx:
            from .reference import reference_runner

            return reference_runner(model)
        from .backend.paddle.runner import PaddleInferenceRunner

        device = "gpu" if cuda_available()[0] else "cpu"
        return PaddleInferenceRunner(model.files, device=device, name=f"paddle:{model.name}")
