"""The TensorRT engine's artifact: a plan built from the engine graph, validated, cached.

Step 3 of the recipe for TensorRT: the engine graph (``engine_graph.EngineGraph``, step 2's
output) in, a validated plan out: FP16 if it passes, else FP16 with the most FP16-sensitive
layers pinned to FP32, else FP32; each attempt isolated (``attempts.py``). What the step builds
(profiles, settings) and the key it caches under come in as a value (:class:`EngineBuild`, made
by :func:`engine_build` and :func:`engine_key` here); from the recipe it borrows only services
(``artifact.ArtifactSource``: the cache, the options, the remembered failures, the validation
inputs) and the engine builder it was given.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ...artifact import ENGINE_ARTIFACT, Artifact, ArtifactSource, check_remembered, remember
from ...cache.key import CacheKey
from ...engine_graph import GRAPH_ARTIFACT, EngineGraph
from ...errors import CacheError, EngineBuildError, ValidationFailedError
from ...log import get_logger
from ...model_resolve import ModelRef, ResolvedModel
from ...model_types import ModelType
from ...settings import check_workspace_fits
from . import rtx_artifact
from .attempts import EngineBuilder
from .flavors import RTX

log = get_logger("pipeline")


class TensorRTSource(ArtifactSource, Protocol):
    """The recipe as the TensorRT step sees it: the shared services plus the engine builder it
    was given (None: a child process per attempt)."""

    engine_builder: EngineBuilder | None


@dataclass(frozen=True)
class EngineBuild:
    """What the TensorRT step builds and the key its plan is cached under (handed in)."""

    profiles: list[dict[str, Any]]  # ShapeProfiles per input, the fused graph's side inputs too
    settings: Any  # config.BuildSettings
    key: CacheKey | None = None  # None until :func:`engine_key` (a device query) is made


def engine_build(options: Any, graph: EngineGraph) -> EngineBuild:
    """The profiles (of the fused graph's inputs) and the build settings; no device query."""
    from ...fusion.artifacts import with_side_inputs

    mtype = graph.model_type
    profiles = profiles_for(options, mtype, graph.input_name, graph.base_input, graph.model)
    return EngineBuild(with_side_inputs(mtype, profiles, graph.input_name), build_settings(options))


def keyed(source: ArtifactSource, graph: EngineGraph, build: EngineBuild) -> EngineBuild:
    """``build`` with its cache key (this GPU's name and compute capability, TensorRT's
    version, the settings, the profiles, the model and its graph stage's key)."""
    from dataclasses import replace

    from ...profiles import profiles_to_dict

    profiles = profiles_to_dict(build.profiles)
    key = engine_key(
        source, graph.model, graph.model_type, profiles, build.settings, graph_key=graph.digest
    )
    return replace(build, key=key)


def profiles_for(
    options: Any,
    model_type: ModelType,
    input_name: str,
    base_input: str | None = None,
    model: ResolvedModel | None = None,
) -> list[dict[str, Any]]:
    """Profiles of the engine's input; given ones written for the unfused input
    ``base_input`` (float NCHW) follow the fused input's name and layout. Default ones take
    their upper bounds (det side, rec width) from the model's inference.yml where it states
    them (``ResolvedModel.max_input_shape``), else PaddleOCR's 4000 / 3200."""
    from ...profiles import default_profiles, rename_input

    if options.profiles and model_type in options.profiles:
        given = list(options.profiles[model_type])
        return rename_input(given, base_input, input_name) if base_input else given
    limits = model.profile_limits() if model is not None else {}
    return default_profiles(model_type, input_name, **limits)


def engine_key(
    source: ArtifactSource,
    model_dir: ModelRef,
    model_type: ModelType,
    profiles,
    settings,
    *,
    graph_key: str | None,
) -> CacheKey:
    """The key of a plan for this GPU; ``graph_key``: the engine graph stage's key digest
    (``EngineGraph.digest``) the plan is built from."""
    if source.options.trt_flavor == RTX:  # this GPU's validated key (rtx_artifact)
        return rtx_artifact.engine_key(
            source, model_dir, model_type, profiles, settings, pending=False, graph_key=graph_key
        )
    from ...backend.cuda.runtime import device_info
    from ...backend.onnx.convert import converter_versions
    from ...fusion.artifacts import FUSED_GRAPH
    from . import adapter

    model = source.resolve(model_dir, model_type)
    gpu = device_info(source.options.device_id)
    check_workspace_fits(settings.workspace_bytes, gpu.total_memory, gpu.name)
    return CacheKey(
        model_fingerprint=str(model.fingerprint),
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
            "graph_key": graph_key,
            **model.source_key(),
        },
        converter_versions=converter_versions(model.is_onnx),
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
    if options.trt_flavor == RTX:
        kwargs["targets"] = rtx_artifact.rtx_targets(options.targets, _gpu_cc(options.device_id))
    return BuildSettings(**kwargs)


def _gpu_cc(device_id: int) -> tuple[int, int] | None:
    """The device's compute capability, None without a usable GPU (ahead-of-time builds)."""
    from ...backend.cuda.runtime import device_info

    try:
        cc = device_info(device_id).compute_capability
    except Exception:
        return None
    return int(cc[0]), int(cc[1])


def open_timing_cache_dir(cache: Any) -> Any:
    """``<cache>/timing`` as a held SafeDir, walked to from the cache root through descriptors
    (no link followed at any level, owner and mode checked; see cache/safedir.py); None (no
    timing cache) if it is not ours: TensorRT must not be fed tactic data another user could
    have planted. ``cache``: an ``EngineCache`` (or a cache dir). The build child inherits the
    descriptor (``attempts.IsolatedEngineBuilder``): the path is never opened again."""
    from ...cache.root import CacheRoot

    fsroot = getattr(cache, "fsroot", None) or CacheRoot(cache)
    try:
        return fsroot.open("timing", create=True)
    except (OSError, CacheError) as exc:
        log.warning("building without the TensorRT timing cache: %s", exc)
        return None


def timing_cache_dir(cache: Any) -> Path | None:
    """Where the timing cache is (:func:`open_timing_cache_dir`, created), for reports."""
    timing = open_timing_cache_dir(cache)
    if timing is None:
        return None
    with timing:
        return timing.path


def tensorrt_engine(source: TensorRTSource, graph: EngineGraph, build: EngineBuild) -> Artifact:
    """The engine step: the engine graph in, a validated engine cached under ``build.key``
    out: FP16 if it passes, else FP16 with FP32-pinned layers, else FP32.

    Each attempt is isolated (see ``attempts.py``); when all fail, the failure is
    remembered under the engine's key and later calls raise RememberedFailureError at once.
    Built from the fused graph (``engine_graph``): det/cls take uint8 NHWC
    ``image_uint8``, rec returns (index, max prob); validated on the fused inputs against
    the model's reference (native Paddle, or ONNX Runtime running an ONNX model dir's source
    graph) on the same images (``comparator.fused``, task agreement).
    """
    options = source.options
    model = graph.model  # resolved once, by the recipe
    mtype = model.model_type
    key, profiles, settings = build.key, build.profiles, build.settings
    assert key is not None, "the engine key is made before the step (keyed)"
    timeout_s = options.effective_build_timeout_s()
    outcome: dict[str, Any] = {}

    def create(tmp: Path) -> tuple[Path, dict[str, Any]]:
        check_remembered(source.failures, key, timeout_s)  # another process may have just failed
        inputs = source.fused_validation_pairs(model, mtype)
        # the validated ONNX's bytes as the cache checked them, into the held build dir: the
        # builder (a child) never opens the cache path again (issue 19); dropped before sealing
        checked = tmp / "source.onnx"
        assert graph.onnx is not None, "the recipe hands the step its validated ONNX"
        checked.write_bytes(graph.onnx.entry.read_artifact())
        step_graph = dataclasses.replace(graph, onnx_path=checked)
        if graph.fused is not None:  # the graph stage's checked bytes: the child fuses nothing
            fused = tmp / GRAPH_ARTIFACT
            fused.write_bytes(graph.read())
            step_graph = dataclasses.replace(step_graph, fused_path=fused)
        with _timing_cache(source, settings) as timing:  # held until the attempts are done
            plan, report, meta = _build_validated(
                source,
                step_graph,
                tmp,
                profiles,
                settings,
                inputs,
                timing,
                _fp16_graphs(source, graph, tmp, settings),
            )
        outcome["report"] = report
        return plan, {**meta, **model.source_metadata()}

    entry = source.cache.get(key)
    if entry is None and options.trt_flavor == RTX:  # a plan built elsewhere, validated here
        entry = _promote_rtx(source, model, mtype, key, outcome)
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
    return Artifact(entry, from_cache="report" not in outcome, extra={"onnx": graph.onnx})


def _timing_cache(source: ArtifactSource, settings: Any) -> Any:
    """The held timing cache dir of a build for this GPU (none for an ahead-of-time build)."""
    timing = open_timing_cache_dir(source.cache) if not settings.targets else None
    return timing if timing is not None else contextlib.nullcontext()


def _promote_rtx(source: Any, model_dir: Path, mtype: ModelType, key: CacheKey, outcome: dict):
    """A TensorRT-RTX plan built ahead of time, validated on this GPU before it is served."""
    validator = getattr(source, "plan_validator", None) or rtx_artifact.IsolatedPlanValidator(
        source.options.effective_build_timeout_s()
    )
    promoted = rtx_artifact.promote_pending(source, model_dir, mtype, key, validator)
    if promoted is None:
        return None
    outcome["report"] = promoted.report  # validated now: not "loaded from cache"
    return promoted.entry


def rtx_pending_engine(source: TensorRTSource, graph: EngineGraph) -> tuple[Any, dict]:
    """A TensorRT-RTX plan of the engine graph built ahead of time (no GPU needed) into the
    cache under its pending key: (entry, what the build reported). Nothing runs it;
    ``tensorrt_engine`` validates it on the target GPU at first use
    (``rtx_artifact.promote_pending``) before serving it."""
    build = engine_build(source.options, graph)
    assert graph.onnx is not None, "the recipe hands the step its validated ONNX"
    return rtx_artifact.build_pending(
        source,
        graph,  # its validated ONNX's checked bytes are what the child builds (issue 19)
        build.profiles,
        build.settings,
        fp16_graphs=lambda tmp: _fp16_graphs(source, graph, tmp, build.settings),
    )


def _builder(source: TensorRTSource) -> EngineBuilder:
    if source.engine_builder is not None:
        return source.engine_builder
    from .attempts import IsolatedEngineBuilder

    return IsolatedEngineBuilder(source.options.effective_build_timeout_s())


def _fp16_graphs(source: ArtifactSource, graph: EngineGraph, tmp: Path, settings: Any) -> Any:
    """Where the TensorRT loaded here builds FP16 from an fp16 graph (10.12+, 11.x,
    TensorRT-RTX): a function giving each FP16 attempt its variant from the graph stage
    (``engine_graph.make_fp16_variant``, cached per set of FP32 pins), copied into ``tmp``;
    else None (the attempt's child makes what it needs, as it would anyway)."""
    if settings.precision != "fp16" or graph.onnx is None or graph.key is None:
        return None
    from . import adapter

    try:
        trt = adapter.load_tensorrt(source.options.trt_flavor)
        if not adapter.fp16_needs_fp16_onnx(trt):
            return None
    except Exception:  # not loadable in this process: the child decides
        return None
    from ...engine_graph import make_fp16_variant

    def fp16_graph(keep_fp32_nodes: tuple[str, ...]) -> Path | None:
        try:
            variant = make_fp16_variant(source.cache, graph, keep_fp32_nodes)
            path = tmp / f"model.fp16.{variant.entry.digest}.onnx"
            path.write_bytes(variant.entry.read_artifact())
        except Exception as exc:  # the attempt's child tries (and records a failure) itself
            log.warning("no cached fp16 engine graph (%s: %s)", type(exc).__name__, exc)
            return None
        return path

    return fp16_graph


def _build_validated(
    source, graph, tmp, profiles, settings, inputs, timing_cache_dir, fp16_graph=None
):
    """The first plan that passes validation (see ``attempts.build_validated``)."""
    from .attempts import build_validated

    return build_validated(
        _builder(source),
        model_dir=graph.model.model_dir,
        model=graph.model,
        mtype=graph.model_type,
        onnx_path=Path(graph.onnx_path),
        fused_path=graph.fused_path,
        fp16_graph=fp16_graph,
        tmp=tmp,
        profiles=profiles,
        settings=settings,
        inputs=inputs,
        min_agreement=source.options.min_agreement,
        device_id=source.options.device_id,
        timing_cache_dir=timing_cache_dir,
        flavor=source.options.trt_flavor,
    )
