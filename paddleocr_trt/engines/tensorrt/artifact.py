"""The TensorRT engine's artifact: a plan built from the fused graph, validated, cached.

FP16 if it passes, else FP16 with the most FP16-sensitive layers pinned to FP32, else FP32;
each attempt isolated (``attempts.py``). The recipe (:mod:`paddleocr_trt.pipeline`) keeps the
shared steps (the validated ONNX, the cache, the validation inputs) and hands itself in as the
``source``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ...artifact import ENGINE_ARTIFACT, Artifact, ArtifactSource, check_remembered, remember
from ...cache.key import CacheKey
from ...errors import CacheError, EngineBuildError, ValidationFailedError
from ...log import get_logger
from ...model_types import ModelType, locate_model_files
from ...settings import check_workspace_fits
from .attempts import EngineBuilder

log = get_logger("pipeline")


class TensorRTSource(ArtifactSource, Protocol):
    """The pipeline as the TensorRT step sees it: the shared steps plus the engine key (a test
    double may fix it) and the engine builder (None: a child process per attempt)."""

    engine_builder: EngineBuilder | None

    def engine_key(
        self, model_dir: Path, model_type: ModelType, profiles: Any, settings: Any
    ) -> CacheKey: ...

    def timing_cache_dir(self) -> Path | None: ...


def profiles_for(
    options: Any, model_type: ModelType, input_name: str, base_input: str | None = None
) -> list[dict[str, Any]]:
    """Profiles of the engine's input; given ones written for the unfused input
    ``base_input`` (float NCHW) follow the fused input's name and layout."""
    from ...profiles import default_profiles, rename_input

    if options.profiles and model_type in options.profiles:
        given = list(options.profiles[model_type])
        return rename_input(given, base_input, input_name) if base_input else given
    return default_profiles(model_type, input_name)


def engine_key(
    source: ArtifactSource, model_dir: Path, model_type: ModelType, profiles, settings
) -> CacheKey:
    from ...backend.cuda.runtime import device_info
    from ...backend.onnx.convert import converter_versions
    from ...fusion.artifacts import FUSED_GRAPH
    from . import adapter

    gpu = device_info(source.options.device_id)
    check_workspace_fits(settings.workspace_bytes, gpu.total_memory, gpu.name)
    return CacheKey(
        model_fingerprint=source.cache.fingerprint(model_dir).digest,
        model_type=model_type.value,
        kind="engine",
        precision=settings.precision,
        profiles=tuple(profiles),
        builder_settings={
            "workspace_bytes": settings.workspace_bytes,
            "optimization_level": settings.optimization_level,
            "tf32": settings.tf32,
            "min_agreement": source.options.min_agreement,
            "graph": FUSED_GRAPH,
        },
        converter_versions=converter_versions(),
        tensorrt_version=adapter.tensorrt_version(),
        gpu_name=gpu.name,
        compute_capability=f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}",
    )


def build_settings(options: Any) -> Any:
    from .config import BuildSettings

    kwargs: dict[str, Any] = {
        "precision": options.precision,
        "optimization_level": options.optimization_level,
        "tf32": options.tf32,
    }
    if options.workspace_bytes:
        kwargs["workspace_bytes"] = options.workspace_bytes
    return BuildSettings(**kwargs)


def timing_cache_dir(cache_root: Path) -> Path | None:
    """``<cache>/timing``, private to this user; None (no timing cache) if it is not ours:
    TensorRT must not be fed tactic data another user could have planted."""
    from ...cache.safety import ensure_private_dir

    try:
        return ensure_private_dir(cache_root / "timing")
    except (OSError, CacheError) as exc:
        log.warning("building without the TensorRT timing cache: %s", exc)
        return None


def tensorrt_engine(
    source: TensorRTSource, model_dir: str | Path, model_type: ModelType | str
) -> Artifact:
    """A validated engine: FP16 if it passes, else FP16 with FP32-pinned layers, else FP32.

    Each attempt is isolated (see ``attempts.py``); when all fail, the failure is
    remembered under the engine's key and later calls raise RememberedFailureError at once.
    Built from the fused graph (``fusion.artifacts``): det/cls take uint8 NHWC
    ``image_uint8``, rec returns (index, max prob); validated on the fused inputs against
    native Paddle on the same images (``comparator.fused``, task agreement).
    """
    from ...fusion.artifacts import fused_input_name, with_side_inputs
    from ...profiles import profiles_to_dict

    options = source.options
    model_dir = locate_model_files(model_dir).model_dir.resolve()
    mtype = ModelType.parse(model_type)
    onnx = source.onnx(model_dir, mtype)
    base_input = (onnx.entry.metadata.get("input_names") or ["x"])[0]
    input_name = fused_input_name(mtype, base_input)
    profiles = with_side_inputs(
        mtype, profiles_for(options, mtype, input_name, base_input), input_name
    )
    settings = build_settings(options)
    key = source.engine_key(model_dir, mtype, profiles_to_dict(profiles), settings)
    timeout_s = options.effective_build_timeout_s()
    outcome: dict[str, Any] = {}

    def create(tmp: Path) -> tuple[Path, dict[str, Any]]:
        check_remembered(source.failures, key, timeout_s)  # another process may have just failed
        inputs = source.fused_validation_pairs(model_dir, mtype)
        plan, report, meta = _build_validated(
            source, model_dir, mtype, onnx.path, tmp, profiles, settings, inputs
        )
        outcome["report"] = report
        return plan, meta

    entry = source.cache.get(key)
    if entry is None:
        check_remembered(source.failures, key, timeout_s)
        try:
            entry = source.cache.get_or_create(
                key,
                create,
                artifact_name=ENGINE_ARTIFACT,
                validate_fn=lambda _path: outcome["report"],
            )
        except (EngineBuildError, ValidationFailedError) as exc:
            remember(source.failures, key, exc, timeout_s)
            raise
    return Artifact(entry, from_cache="report" not in outcome, extra={"onnx": onnx})


def _builder(source: TensorRTSource) -> EngineBuilder:
    if source.engine_builder is not None:
        return source.engine_builder
    from .attempts import IsolatedEngineBuilder

    return IsolatedEngineBuilder(source.options.effective_build_timeout_s())


def _build_validated(source, model_dir, mtype, onnx_path, tmp, profiles, settings, inputs):
    """The first plan that passes validation (see ``attempts.build_validated``)."""
    from .attempts import build_validated

    return build_validated(
        _builder(source),
        model_dir=model_dir,
        mtype=mtype,
        onnx_path=Path(onnx_path),
        tmp=tmp,
        profiles=profiles,
        settings=settings,
        inputs=inputs,
        min_agreement=source.options.min_agreement,
        device_id=source.options.device_id,
        timing_cache_dir=source.timing_cache_dir(),
    )
