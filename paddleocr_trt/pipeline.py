"""Paddle model dir -> validated ONNX -> validated TensorRT engine, each step cached.

The hook (``integration.tensorrt_path``) and the public API (``optimizer``) both go through
:class:`ArtifactPipeline`, so an engine the CLI built is the one ``PaddleOCR(use_tensorrt=True)``
loads, and nothing reaches the cache without passing validation against native Paddle.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .cache.key import CacheKey
from .cache.store import CacheEntry, EngineCache
from .errors import ValidationFailedError
from .log import get_logger
from .model_types import ModelType, locate_model_files
from .settings import DEFAULT_MIN_AGREEMENT, default_cache_dir

log = get_logger("pipeline")

ONNX_ARTIFACT = "model.onnx"
ENGINE_ARTIFACT = "engine.plan"
#: Validation batch sizes: 1 and a multi-image batch (the issue asks for several).
VALIDATION_BATCHES = (1, 4)


@dataclass(frozen=True)
class PipelineOptions:
    precision: str = "fp16"  # "fp16" | "fp32"
    workspace_bytes: int | None = None  # None: PADDLEOCR_TRT_WORKSPACE_GB or 4 GiB
    optimization_level: int | None = None
    tf32: bool = True
    #: per model type: list of {input name: ShapeProfile}; None = profiles.default_profiles
    profiles: dict[ModelType, list[dict[str, Any]]] | None = None
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    validation_images: tuple[Path, ...] | None = None
    device_id: int = 0
    conversion_timeout_s: float = 900.0
    #: runners made from these options (the hook's) replay CUDA graphs per input-shape set,
    #: keeping at most ``cuda_graph_cache_size`` per execution context
    use_cuda_graphs: bool = False
    cuda_graph_cache_size: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", self.precision.lower())
        if self.precision not in ("fp16", "fp32"):
            raise ValueError(f"precision must be fp16 or fp32, got {self.precision!r}")
        if self.cuda_graph_cache_size < 1:
            raise ValueError(
                f"cuda_graph_cache_size must be >= 1, got {self.cuda_graph_cache_size}"
            )


@dataclass
class Artifact:
    """A cached, validated artifact and where it came from."""

    entry: CacheEntry
    from_cache: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.entry.artifact_path

    @property
    def validation(self) -> dict[str, Any] | None:
        return self.entry.validation


class ArtifactPipeline:
    def __init__(self, cache: EngineCache | None = None, options: PipelineOptions | None = None):
        self.cache = cache or EngineCache(default_cache_dir())
        self.options = options or PipelineOptions()

    # -- inputs and references ----------------------------------------------------------------

    @functools.cached_property
    def _validation_images(self) -> tuple[Path, ...]:
        if self.options.validation_images:
            return tuple(Path(p) for p in self.options.validation_images)
        from .testing.images import render_sample_images

        return tuple(s.path for s in render_sample_images(self.cache.root / "validation-images"))

    def validation_images(self) -> list[Path]:
        """Rendered once per pipeline: every validation and benchmark input is cut from them."""
        return list(self._validation_images)

    def validation_inputs(self, model_dir: Path, model_type: ModelType) -> list[np.ndarray]:
        from .comparator.inputs import build_validation_inputs

        return build_validation_inputs(
            model_type,
            self.validation_images(),
            model_dir=model_dir,
            batch_sizes=VALIDATION_BATCHES,
        )

    def fused_validation_pairs(self, model_dir: Path, model_type: ModelType) -> list[Any]:
        """The validation inputs as (unfused graph input, fused graph input) pairs."""
        from .comparator.fused import build_fused_pairs

        return build_fused_pairs(
            model_type,
            self.validation_images(),
            model_dir=model_dir,
            batch_sizes=VALIDATION_BATCHES,
        )

    @staticmethod
    def reference_runner(model_dir: Path) -> Any:
        from .backend.paddle.runner import PaddleInferenceRunner

        # One thread per core: Paddle's default of 10 oversubscribes small machines (2x slower).
        return PaddleInferenceRunner(
            model_dir,
            device="cpu",
            cpu_threads=os.cpu_count() or 1,
            name=f"paddle:{model_dir.name}",
        )

    def _compare(self, model_type: ModelType, model_dir: Path, candidate: Any, inputs) -> Any:
        from .comparator.compare import compare

        with self.reference_runner(model_dir) as reference:
            return compare(
                model_type, reference, candidate, inputs, min_agreement=self.options.min_agreement
            )

    # -- ONNX ---------------------------------------------------------------------------------

    def onnx_key(self, model_dir: Path, model_type: ModelType) -> CacheKey:
        from .backend.onnx.convert import converter_versions

        return CacheKey(
            model_fingerprint=self.cache.fingerprint(model_dir).digest,
            model_type=model_type.value,
            kind="onnx",
            precision="fp32",
            builder_settings={"min_agreement": self.options.min_agreement},
            converter_versions=converter_versions(),
        )

    def onnx(self, model_dir: str | Path, model_type: ModelType | str) -> Artifact:
        """The validated fp32 ONNX of a model (converted once, then from the cache)."""
        from .backend.onnx.convert import convert_to_onnx
        from .backend.onnxrt.runner import OnnxRuntimeRunner

        model_dir = locate_model_files(model_dir).model_dir.resolve()
        mtype = ModelType.parse(model_type)
        key = self.onnx_key(model_dir, mtype)
        created: dict[str, Any] = {}

        def create(tmp: Path) -> tuple[Path, dict[str, Any]]:
            result = convert_to_onnx(
                model_dir, tmp / ONNX_ARTIFACT, mtype, timeout_s=self.options.conversion_timeout_s
            )
            created["conversion"] = result
            return result.onnx_path, {
                "repairs": result.repairs,
                "conversion_seconds": result.seconds,
                "input_names": result.input_names,
                "output_names": result.output_names,
                "model_dir": str(model_dir),
            }

        def validate(path: Path) -> Any:
            inputs = self.validation_inputs(model_dir, mtype)
            with OnnxRuntimeRunner(path, name=f"onnxruntime:{model_dir.name}") as candidate:
                report = self._compare(mtype, model_dir, candidate, inputs)
            _log_report("ONNX", model_dir, report)
            return report

        entry = self.cache.get_or_create(
            key, create, artifact_name=ONNX_ARTIFACT, validate_fn=validate
        )
        return Artifact(entry, from_cache="conversion" not in created)

    # -- ONNX Runtime engine -------------------------------------------------------------------

    def onnxruntime_key(self, model_dir: Path, model_type: ModelType, provider: str) -> CacheKey:
        from .onnxruntime_artifact import onnxruntime_key

        return onnxruntime_key(self, model_dir, model_type, provider)

    def onnxruntime_engine(
        self, model_dir: str | Path, model_type: ModelType | str, provider: str, device_id: int = 0
    ) -> Artifact:
        """The fused graph an ONNX Runtime engine runs, validated under ``provider``, cached
        (see :mod:`paddleocr_trt.onnxruntime_artifact`)."""
        from .onnxruntime_artifact import onnxruntime_engine

        return onnxruntime_engine(self, model_dir, model_type, provider, device_id)

    # -- TensorRT -----------------------------------------------------------------------------

    def profiles_for(
        self, model_type: ModelType, input_name: str, base_input: str | None = None
    ) -> list[dict[str, Any]]:
        """Profiles of the engine's input; given ones written for the unfused input
        ``base_input`` (float NCHW) follow the fused input's name and layout."""
        from .profiles import default_profiles, rename_input

        if self.options.profiles and model_type in self.options.profiles:
            given = list(self.options.profiles[model_type])
            return rename_input(given, base_input, input_name) if base_input else given
        return default_profiles(model_type, input_name)

    def engine_key(self, model_dir: Path, model_type: ModelType, profiles, settings) -> CacheKey:
        from .backend.cuda.runtime import device_info
        from .backend.onnx.convert import converter_versions
        from .backend.trt import adapter
        from .fusion.artifacts import FUSED_GRAPH

        gpu = device_info(self.options.device_id)
        return CacheKey(
            model_fingerprint=self.cache.fingerprint(model_dir).digest,
            model_type=model_type.value,
            kind="engine",
            precision=settings.precision,
            profiles=tuple(profiles),
            builder_settings={
                "workspace_bytes": settings.workspace_bytes,
                "optimization_level": settings.optimization_level,
                "tf32": settings.tf32,
                "min_agreement": self.options.min_agreement,
                "graph": FUSED_GRAPH,
            },
            converter_versions=converter_versions(),
            tensorrt_version=adapter.tensorrt_version(),
            gpu_name=gpu.name,
            compute_capability=f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}",
        )

    def build_settings(self) -> Any:
        from .backend.trt.config import BuildSettings

        kwargs: dict[str, Any] = {
            "precision": self.options.precision,
            "optimization_level": self.options.optimization_level,
            "tf32": self.options.tf32,
        }
        if self.options.workspace_bytes:
            kwargs["workspace_bytes"] = self.options.workspace_bytes
        return BuildSettings(**kwargs)

    def engine(self, model_dir: str | Path, model_type: ModelType | str) -> Artifact:
        """A validated engine: FP16 if it passes, else FP16 with FP32-pinned layers, else FP32.

        Built from the fused graph (``fusion.artifacts``): det/cls take uint8 NHWC
        ``image_uint8``, rec returns (index, max prob); validated on the fused inputs against
        native Paddle on the same images (``comparator.fused``, task agreement).
        """
        from .fusion.artifacts import fused_input_name
        from .profiles import profiles_to_dict

        model_dir = locate_model_files(model_dir).model_dir.resolve()
        mtype = ModelType.parse(model_type)
        onnx = self.onnx(model_dir, mtype)
        base_input = (onnx.entry.metadata.get("input_names") or ["x"])[0]
        input_name = fused_input_name(mtype, base_input)
        profiles = self.profiles_for(mtype, input_name, base_input)
        settings = self.build_settings()
        key = self.engine_key(model_dir, mtype, profiles_to_dict(profiles), settings)
        outcome: dict[str, Any] = {}

        def create(tmp: Path) -> tuple[Path, dict[str, Any]]:
            inputs = self.fused_validation_pairs(model_dir, mtype)
            plan, report, meta = self._build_validated(
                model_dir, mtype, onnx.path, tmp, profiles, settings, inputs
            )
            outcome["report"] = report
            return plan, meta

        entry = self.cache.get_or_create(
            key,
            create,
            artifact_name=ENGINE_ARTIFACT,
            validate_fn=lambda _path: outcome["report"],
        )
        return Artifact(entry, from_cache="report" not in outcome, extra={"onnx": onnx})

    def _build_validated(self, model_dir, mtype, onnx_path, tmp, profiles, settings, inputs):
        """Try precisions in order of speed; return the first plan that passes validation."""
        from .backend.trt.builder import build_engine
        from .fusion.artifacts import FUSED_GRAPH

        attempts = [settings]
        if settings.precision == "fp16":
            attempts.append(None)  # placeholder: FP16 with sensitive layers pinned to FP32
            attempts.append(replace(settings, precision="fp32"))
        history: list[dict[str, Any]] = []
        last_report = None
        for attempt in attempts:
            if attempt is None:
                attempt = self._pinned_settings(settings, onnx_path, inputs, history)
                if attempt is None:
                    continue
            plan_path = tmp / f"{attempt.precision}-{len(history)}.plan"
            build_onnx, fp16_onnx = self._engine_onnx(mtype, model_dir, onnx_path, tmp, attempt)
            result = build_engine(
                build_onnx,
                plan_path,
                attempt,
                profiles,
                timing_cache_dir=self.cache.root / "timing",
                fp16_onnx_path=fp16_onnx,
            )
            report = self._validate_plan(mtype, model_dir, plan_path, inputs)
            history.append(
                {
                    "precision": attempt.precision,
                    "fp32_layers": list(attempt.fp32_layers),
                    "build_seconds": result.seconds,
                    "agreement": report.agreement,
                    "passed": report.passed,
                }
            )
            last_report = report
            if report.passed:
                log.info(
                    "%s engine for %s passed validation (agreement %.4f)",
                    attempt.precision,
                    model_dir,
                    report.agreement,
                )
                return (
                    plan_path,
                    report,
                    {
                        "precision": attempt.precision,
                        "fp32_layers": list(attempt.fp32_layers),
                        "build_seconds": result.seconds,
                        "tensorrt_version": result.tensorrt_version,
                        "graph": FUSED_GRAPH,
                        "attempts": history,
                        "model_dir": str(model_dir),
                    },
                )
            log.warning(
                "%s engine for %s failed validation (agreement %.4f < %.2f): %s",
                attempt.precision,
                model_dir,
                report.agreement,
                self.options.min_agreement,
                getattr(report, "reason", ""),
            )
            plan_path.unlink(missing_ok=True)
        raise ValidationFailedError(
            f"no engine for {model_dir} passed validation against native Paddle "
            f"(attempts: {history})",
            last_report,
        )

    def _pinned_settings(self, settings, onnx_path: Path, inputs, history) -> Any:
        from .backend.onnx.precision import find_fp16_sensitive_nodes

        try:
            # The unfused graph names the nodes to pin; it takes the pairs' float input.
            sensitive = find_fp16_sensitive_nodes(onnx_path, [inputs[0].base])
        except Exception as exc:
            log.warning("fp16 sensitivity analysis failed (%s); skipping layer pinning", exc)
            return None
        names = tuple(s.node for s in sensitive[:8]) if sensitive else ()
        if not names:
            return None
        log.info("retrying FP16 with %d layers pinned to FP32: %s", len(names), ", ".join(names))
        return replace(settings, fp32_layers=names)

    @staticmethod
    def _engine_onnx(mtype: ModelType, model_dir: Path, onnx_path: Path, tmp: Path, attempt):
        """(fused ONNX, fused fp16 ONNX or None) for one build attempt; fusion after fp16."""
        from .backend.trt import adapter
        from .fusion.artifacts import engine_onnx

        fp16 = attempt.precision == "fp16" and adapter.fp16_needs_fp16_onnx()
        return engine_onnx(
            mtype, model_dir, onnx_path, tmp, fp16_onnx=fp16, keep_fp32_nodes=attempt.fp32_layers
        )

    def _validate_plan(self, mtype: ModelType, model_dir: Path, plan: Path, pairs) -> Any:
        from .backend.trt.runner import TensorRTRunner
        from .fusion.artifacts import check_fused_graph

        with (
            self.reference_runner(model_dir) as reference,
            TensorRTRunner(
                plan, name=f"tensorrt:{model_dir.name}", device_id=self.options.device_id
            ) as candidate,
        ):
            # fp16 is not exact: task agreement with native Paddle decides (tolerance None)
            report = check_fused_graph(
                mtype, model_dir, reference, candidate, pairs,
                min_agreement=self.options.min_agreement, tolerance=None,
            )  # fmt: skip
        _log_report("TensorRT", model_dir, report)
        return report


def _log_report(what: str, model_dir: Path, report: Any) -> None:
    level = log.info if report.passed else log.warning
    level(
        "%s validation of %s: agreement %.4f (%s)",
        what,
        model_dir,
        report.agreement,
        "passed" if report.passed else f"FAILED: {getattr(report, 'reason', '')}",
    )


@functools.lru_cache(maxsize=8)
def shared_pipeline(cache_root: str, options: PipelineOptions) -> ArtifactPipeline:
    """One pipeline per (cache root, options) per process: the hook builds many models."""
    return ArtifactPipeline(EngineCache(Path(cache_root)), options)
