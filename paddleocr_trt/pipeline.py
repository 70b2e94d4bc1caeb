"""Paddle model dir -> validated ONNX -> validated TensorRT engine, each step cached.

The hook (``integration.tensorrt_path``) and the public API (``optimizer``) both go through
:class:`ArtifactPipeline`, so an engine the CLI built is the one ``PaddleOCR(use_tensorrt=True)``
loads, and nothing reaches the cache without passing validation against native Paddle.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cache.failures import FailureMemo
from .cache.key import CacheKey
from .cache.store import CacheEntry, EngineCache
from .engine_attempts import EngineBuilder
from .errors import (
    ConversionError,
    EngineBuildError,
    PaddleOCRTRTError,
    ValidationFailedError,
)
from .log import get_logger
from .model_types import ModelType, locate_model_files
from .progress import stage
from .settings import (
    DEFAULT_MIN_AGREEMENT,
    build_timeout_s,
    check_workspace_fits,
    default_cache_dir,
)

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
    #: per engine attempt (build + validation in a child); None: PADDLEOCR_TRT_BUILD_TIMEOUT_S
    build_timeout_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", self.precision.lower())
        if self.precision not in ("fp16", "fp32"):
            raise ValueError(f"precision must be fp16 or fp32, got {self.precision!r}")
        if self.cuda_graph_cache_size < 1:
            raise ValueError(
                f"cuda_graph_cache_size must be >= 1, got {self.cuda_graph_cache_size}"
            )
        if self.build_timeout_s is not None and not self.build_timeout_s > 0:
            raise ValueError(f"build_timeout_s must be positive, got {self.build_timeout_s}")

    def effective_build_timeout_s(self) -> float:
        return self.build_timeout_s if self.build_timeout_s is not None else build_timeout_s()


class RememberedFailureError(PaddleOCRTRTError):
    """This artifact failed before with the same key; it is not retried until cleared."""


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
    def __init__(
        self,
        cache: EngineCache | None = None,
        options: PipelineOptions | None = None,
        *,
        engine_builder: EngineBuilder | None = None,
    ):
        self.cache = cache or EngineCache(default_cache_dir())
        self.options = options or PipelineOptions()
        self.failures = FailureMemo(self.cache.root)
        #: None: engine_attempts.IsolatedEngineBuilder (a child process per attempt)
        self.engine_builder = engine_builder

    # -- remembered failures ------------------------------------------------------------------

    def _check_remembered(self, key: CacheKey, timeout_s: float) -> None:
        """Raise RememberedFailureError if ``key`` failed before (unless it only timed out and
        the timeout has been raised since)."""
        record = self.failures.get(key)
        if record is None:
            return
        before = record.context.get("timeout_s")
        if record.context.get("timed_out") and before is not None and timeout_s > float(before):
            log.info(
                "%s timed out after %s s before; retrying with the longer timeout of %s s",
                key.describe(),
                before,
                timeout_s,
            )
            return
        raise RememberedFailureError(
            f"{key.describe()} failed before and is not retried ({record.describe()}); "
            f"run `paddleocr-trt cache clear {key.digest[:12]}` to try again"
        )

    def _remember(self, key: CacheKey, exc: BaseException, timeout_s: float) -> None:
        attempts = list(getattr(exc, "attempts", None) or [])
        timed_out = "timed out" in str(exc) or "timeout" in str(exc)
        if attempts:
            timed_out = any(a.get("outcome") == "timeout" for a in attempts)
        self.failures.record(
            key,
            exc,
            attempts=attempts,
            context={"timeout_s": timeout_s, "timed_out": timed_out},
        )

    # -- inputs and references ----------------------------------------------------------------

    @functools.cached_property
    def _validation_images(self) -> tuple[Path, ...]:
        if self.options.validation_images:
            return tuple(Path(p) for p in self.options.validation_images)
        from .cache.fsutil import cache_error
        from .cache.safety import ensure_private_dir
        from .testing.images import render_sample_images

        out = self.cache.root / "validation-images"
        try:
            if not os.path.lexists(self.cache.root):
                ensure_private_dir(self.cache.root)
            ensure_private_dir(out)
            paths = tuple(s.path for s in render_sample_images(out))
            for path in paths:
                os.chmod(path, 0o600, follow_symlinks=False)
            return paths
        except OSError as exc:
            raise cache_error(self.cache.root, exc, "rendering the validation images") from exc

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

        timeout_s = self.options.conversion_timeout_s

        def create(tmp: Path) -> tuple[Path, dict[str, Any]]:
            self._check_remembered(key, timeout_s)  # another process may have just failed
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

        entry = self.cache.get(key)
        if entry is None:
            self._check_remembered(key, timeout_s)
            try:
                with stage(f"converting {mtype.value} model {model_dir.name} to ONNX"):
                    entry = self.cache.get_or_create(
                        key, create, artifact_name=ONNX_ARTIFACT, validate_fn=validate
                    )
            except (ConversionError, ValidationFailedError) as exc:
                self._remember(key, exc, timeout_s)
                raise
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
        check_workspace_fits(settings.workspace_bytes, gpu.total_memory, gpu.name)
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

        Each attempt is isolated (see ``engine_attempts``); when all fail, the failure is
        remembered under the engine's key and later calls raise RememberedFailureError at once.
        Built from the fused graph (``fusion.artifacts``): det/cls take uint8 NHWC
        ``image_uint8``, rec returns (index, max prob); validated on the fused inputs against
        native Paddle on the same images (``comparator.fused``, task agreement).
        """
        from .fusion.artifacts import fused_input_name, with_side_inputs
        from .profiles import profiles_to_dict

        model_dir = locate_model_files(model_dir).model_dir.resolve()
        mtype = ModelType.parse(model_type)
        onnx = self.onnx(model_dir, mtype)
        base_input = (onnx.entry.metadata.get("input_names") or ["x"])[0]
        input_name = fused_input_name(mtype, base_input)
        profiles = with_side_inputs(
            mtype, self.profiles_for(mtype, input_name, base_input), input_name
        )
        settings = self.build_settings()
        key = self.engine_key(model_dir, mtype, profiles_to_dict(profiles), settings)
        timeout_s = self.options.effective_build_timeout_s()
        outcome: dict[str, Any] = {}

        def create(tmp: Path) -> tuple[Path, dict[str, Any]]:
            self._check_remembered(key, timeout_s)  # another process may have just failed
            inputs = self.fused_validation_pairs(model_dir, mtype)
            plan, report, meta = self._build_validated(
                model_dir, mtype, onnx.path, tmp, profiles, settings, inputs
            )
            outcome["report"] = report
            return plan, meta

        entry = self.cache.get(key)
        if entry is None:
            self._check_remembered(key, timeout_s)
            try:
                entry = self.cache.get_or_create(
                    key,
                    create,
                    artifact_name=ENGINE_ARTIFACT,
                    validate_fn=lambda _path: outcome["report"],
                )
            except (EngineBuildError, ValidationFailedError) as exc:
                self._remember(key, exc, timeout_s)
                raise
        return Artifact(entry, from_cache="report" not in outcome, extra={"onnx": onnx})

    def _builder(self) -> EngineBuilder:
        if self.engine_builder is not None:
            return self.engine_builder
        from .engine_attempts import IsolatedEngineBuilder

        return IsolatedEngineBuilder(self.options.effective_build_timeout_s())

    def timing_cache_dir(self) -> Path | None:
        """``<cache>/timing``, private to this user; None (no timing cache) if it is not ours:
        TensorRT must not be fed tactic data another user could have planted."""
        from .cache.safety import ensure_private_dir
        from .errors import CacheError

        try:
            return ensure_private_dir(self.cache.root / "timing")
        except (OSError, CacheError) as exc:
            log.warning("building without the TensorRT timing cache: %s", exc)
            return None

    def _build_validated(self, model_dir, mtype, onnx_path, tmp, profiles, settings, inputs):
        """The first plan that passes validation (see ``engine_attempts.build_validated``)."""
        from .engine_attempts import build_validated

        return build_validated(
            self._builder(),
            model_dir=model_dir,
            mtype=mtype,
            onnx_path=Path(onnx_path),
            tmp=tmp,
            profiles=profiles,
            settings=settings,
            inputs=inputs,
            min_agreement=self.options.min_agreement,
            device_id=self.options.device_id,
            timing_cache_dir=self.timing_cache_dir(),
        )


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
