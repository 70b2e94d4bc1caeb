"""The artifact recipe: model dir -> validated ONNX -> engine graph -> an engine's validated
artifact, each step one input and one output.

The hook (``integration.engine_path``) and the public API (``optimizer``) both go through
:class:`ArtifactPipeline`, so an engine the CLI built is the one ``PaddleOCR(use_tensorrt=True)``
loads, and nothing reaches the cache without passing validation against the model's reference
(``reference.py``: native Paddle for a Paddle model dir, ONNX Runtime running the source graph
for an ONNX model dir). Step 1 (the validated ONNX) is cached here; step 2 (the engine graph,
``engine_graph.py``) is cached as a stage of its own, made from it; step 3 is each engine's own
(``engines/<name>/artifact.py``, through its contract), which caches the artifact. The model
is resolved once at each entry (:meth:`ArtifactPipeline.resolve`) and that value goes down;
nothing below reads the directory again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import (
    ONNX_ARTIFACT,
    Artifact,
    RememberedFailureError,
    check_remembered,
    log_report,
    remember,
)
from .cache.failures import FailureMemo
from .cache.key import CacheKey
from .cache.store import EngineCache
from .engine_graph import EngineGraph, make_engine_graph
from .engines import registry
from .engines.contract import Target
from .errors import (
    ConversionError,
    ValidationFailedError,
)
from .log import get_logger
from .model_resolve import ModelRef, ResolvedModel, resolve_model
from .model_types import ModelType
from .progress import stage
from .settings import DEFAULT_MIN_AGREEMENT, build_timeout_s, default_cache_dir

log = get_logger("pipeline")

#: re-exported: callers catch it from here
__all__ = [
    "Artifact",
    "ArtifactPipeline",
    "PipelineOptions",
    "RememberedFailureError",
    "shared_pipeline",
]

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
    #: "tensorrt" (full TensorRT) or "tensorrt-rtx" (TensorRT for RTX GPUs, ``rtx_artifact``)
    trt_flavor: str = "tensorrt"
    #: TensorRT-RTX build targets (``sm86``...); empty: every architecture it runs
    targets: tuple[str, ...] = ()

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


class ArtifactPipeline:
    def __init__(
        self,
        cache: EngineCache | None = None,
        options: PipelineOptions | None = None,
        *,
        engine_builder: Any = None,  # engines.tensorrt.attempts.EngineBuilder
    ):
        self.cache = cache or EngineCache(default_cache_dir())
        self.options = options or PipelineOptions()
        self.failures = FailureMemo(self.cache)
        #: None: engines.tensorrt.attempts.IsolatedEngineBuilder (a child process per attempt)
        self.engine_builder = engine_builder

    def _check_remembered(self, key: CacheKey, timeout_s: float) -> None:
        check_remembered(self.failures, key, timeout_s)

    def _remember(self, key: CacheKey, exc: BaseException, timeout_s: float) -> None:
        remember(self.failures, key, exc, timeout_s)

    # -- the model, resolved once --------------------------------------------------------------

    def resolve(self, model: ModelRef, model_type: ModelType | str | None = None) -> ResolvedModel:
        """``model`` resolved (files, type checked against inference.yml, its contents) with
        its content fingerprint from this cache's hash index; a resolved value with a
        fingerprint is returned as is."""
        resolved = resolve_model(model, model_type)
        if resolved.fingerprint is None:
            resolved = resolved.with_fingerprint(self.cache.fingerprint(resolved.files).digest)
        return resolved

    # -- inputs and references ----------------------------------------------------------------

    @functools.cached_property
    def _validation_images(self) -> tuple[Any, ...]:
        if self.options.validation_images:  # the user's own files, read as the user asked
            return tuple(Path(p) for p in self.options.validation_images)
        from .cache.fsutil import cache_error
        from .comparator.inputs import EncodedImage
        from .comparator.sample_images import render_sample_image_bytes

        rendered = [EncodedImage(name, data) for name, data in render_sample_image_bytes()]
        try:
            with self.cache.fsroot.open("validation-images", create=True) as out:
                for image in rendered:
                    # a new 0600 file renamed into place through the dir's descriptor: a link
                    # or hard link planted at the name is replaced, never written through
                    out.write_bytes(image.name, image.data, durable=False)
        except OSError as exc:
            raise cache_error(self.cache.root, exc, "rendering the validation images") from exc
        # validation decodes these bytes in memory, as PaddleX decodes a file: the files just
        # written (for the user to look at) are never read back by path (issue 19)
        return tuple(rendered)

    def validation_images(self) -> list[Any]:
        """Rendered once per pipeline: every validation and benchmark input is cut from them
        (``comparator.inputs.EncodedImage``; the user's ``validation_images`` paths as given)."""
        return list(self._validation_images)

    def validation_inputs(self, model_dir: ModelRef, model_type: ModelType) -> list[np.ndarray]:
        from .comparator.inputs import build_validation_inputs

        return build_validation_inputs(
            model_type,
            self.validation_images(),
            model_dir=model_dir,
            batch_sizes=VALIDATION_BATCHES,
        )

    def fused_validation_pairs(self, model_dir: ModelRef, model_type: ModelType) -> list[Any]:
        """The validation inputs as (unfused graph input, fused graph input) pairs."""
        from .comparator.fused import build_fused_pairs

        return build_fused_pairs(
            model_type,
            self.validation_images(),
            model_dir=model_dir,
            batch_sizes=VALIDATION_BATCHES,
        )

    @staticmethod
    def reference_runner(model: ModelRef) -> Any:
        """Native Paddle for a Paddle model dir, ONNX Runtime on the source graph for an ONNX
        one (``reference.reference_runner``)."""
        from .reference import reference_runner

        return reference_runner(resolve_model(model))

    def compare(self, model_type: ModelType, model: ModelRef, candidate: Any, inputs) -> Any:
        from .comparator.compare import compare

        with self.reference_runner(model) as reference:
            return compare(
                model_type, reference, candidate, inputs, min_agreement=self.options.min_agreement
            )

    # -- ONNX ---------------------------------------------------------------------------------

    def onnx_key(self, model_dir: ModelRef, model_type: ModelType) -> CacheKey:
        from .backend.onnx.convert import converter_versions

        model = self.resolve(model_dir, model_type)
        return CacheKey(
            model_fingerprint=str(model.fingerprint),
            model_type=model_type.value,
            kind="onnx",
            precision="fp32",
            builder_settings={"min_agreement": self.options.min_agreement, **model.source_key()},
            converter_versions=converter_versions(model.is_onnx),
        )

    def onnx(self, model_dir: ModelRef, model_type: ModelType | str) -> Artifact:
        """The validated fp32 ONNX of a model (converted once, then from the cache). An ONNX
        model dir's source graph is not converted: it is checked, its axes and nodes named,
        and validated against ONNX Runtime running the untouched source."""
        from .backend.onnx.convert import convert_to_onnx
        from .backend.onnx.source_onnx import check_source_onnx

        model = self.resolve(model_dir, model_type)
        model_dir = model.model_dir
        mtype = model.model_type
        key = self.onnx_key(model, mtype)
        created: dict[str, Any] = {}

        timeout_s = self.options.conversion_timeout_s

        def create(tmp: Path) -> tuple[Path, dict[str, Any]]:
            self._check_remembered(key, timeout_s)  # another process may have just failed
            make = check_source_onnx if model.is_onnx else convert_to_onnx
            result = make(model.files, tmp / ONNX_ARTIFACT, mtype, timeout_s=timeout_s)
            created["conversion"] = result
            return result.onnx_path, {
                "repairs": result.repairs,
                "conversion_seconds": result.seconds,
                "input_names": result.input_names,
                "output_names": result.output_names,
                "model_dir": str(model_dir),
                **model.source_metadata(),
            }

        def validate(path: Path) -> Any:
            inputs = self.validation_inputs(model, mtype)
            checker = registry.engine("onnxruntime")  # runs any ONNX graph on the CPU
            with (
                stage(
                    f"validating the {mtype.value} ONNX of {model_dir.name} against "
                    f"{model.reference_label}"
                ),
                checker.graph_runner(path, name=f"onnxruntime:{model_dir.name}") as candidate,
            ):
                report = self.compare(mtype, model, candidate, inputs)
            log_report("ONNX", model, report)
            return report

        entry = self.cache.get(key)
        if entry is None:
            self._check_remembered(key, timeout_s)
            try:
                verb = "checking the source ONNX of" if model.is_onnx else "converting"
                with stage(f"{verb} {mtype.value} model {model_dir.name} to ONNX"):
                    entry = self.cache.get_or_create(
                        key, create, artifact_name=ONNX_ARTIFACT, validate_fn=validate
                    )
            except (ConversionError, ValidationFailedError) as exc:
                self._remember(key, exc, timeout_s)
                raise
        return Artifact(entry, from_cache="conversion" not in created)

    # -- the engine graph ---------------------------------------------------------------------

    def engine_graph(self, onnx: Artifact, model: ResolvedModel) -> EngineGraph:
        """Step 2: the engine graph (fused; its fp16/pinned variants on request) of step 1's
        validated ONNX, cached as a stage of its own (kind "graph", ``engine_graph.py``)."""
        return make_engine_graph(self.cache, onnx, model, self.failures)

    def graph(self, model_dir: ModelRef, model_type: ModelType | str | None) -> EngineGraph:
        """Steps 1 and 2 for a model: the engine graph of its validated ONNX."""
        model = self.resolve(model_dir, model_type)  # once; every step takes the value
        onnx = self.onnx(model, model.model_type)  # step 1: model -> validated ONNX
        return self.engine_graph(onnx, model)  # step 2: validated ONNX -> engine graph

    # -- engines (engines/<name>/, through their contract) -------------------------------------

    def artifact(
        self,
        engine: str,
        model_dir: ModelRef,
        model_type: ModelType | str | None,
        target: Target | None = None,
    ) -> Artifact | None:
        """The artifact the engine called ``engine`` runs (see ``engines/contract.py``), made
        from this recipe's engine graph; ``target`` defaults to the options' GPU."""
        plugin = registry.engine(engine)
        if not plugin.needs_artifact:
            return None
        target = target or Target("gpu", self.options.device_id)
        graph = self.graph(model_dir, model_type)  # steps 1 and 2
        return plugin.prepare(self, graph, target)  # step 3: engine graph -> engine artifact

    def engine(self, model_dir: ModelRef, model_type: ModelType | str) -> Artifact:
        """A validated TensorRT engine (``engines/tensorrt/artifact.py``)."""
        artifact = self.artifact("tensorrt", model_dir, model_type)
        assert artifact is not None
        return artifact

    def timing_cache_dir(self) -> Path | None:
        """TensorRT's timing cache under this cache (``engines/tensorrt/artifact.py``)."""
        return registry.engine("tensorrt").timing_cache_dir(self.cache)


@functools.lru_cache(maxsize=8)
def shared_pipeline(cache_root: str, options: PipelineOptions) -> ArtifactPipeline:
    """One pipeline per (cache root, options) per process: the hook builds many models."""
    return ArtifactPipeline(EngineCache(Path(cache_root)), options)
