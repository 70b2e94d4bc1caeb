"""One engine's side of the hook, whichever engine it is: the engine's cached, validated
artifact -> its runner, with native Paddle as the safety net.

Engines are found by name (:mod:`paddleocr_trt.engines.registry`) and used only through their
contract (:mod:`paddleocr_trt.engines.contract`), so a new engine needs nothing here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..backend.base import BaseRunner
from ..engines import registry
from ..engines.contract import LoadRequest
from ..errors import CacheError
from ..model_types import ModelType
from ..pipeline import PipelineOptions, shared_pipeline
from ..settings import default_cache_dir
from .decision import target_of
from .fallback import LazyNativeRunner
from .fused_runner import FusedEngineRunner, HostNormalizingNative
from .request import TensorRTRequest


def engine_runner(
    engine_name: str,
    *,
    model_name: str,
    model_dir: Path,
    model_type: ModelType,
    request: TensorRTRequest,
    engine_config: Mapping[str, Any],
    native_factory: Callable[[], Any],
) -> tuple[BaseRunner, str]:
    """Prepare (or load from the cache) the engine's artifact for this model; return the
    guarded runner and a one-line description."""
    engine = registry.engine(engine_name)
    # The GPU the user asked for, also where the CPU build of Paddle made PaddleX use the CPU.
    target = target_of(request, engine_config)
    options = PipelineOptions(**engine.recipe_options(request.precision, target))
    pipeline = shared_pipeline(str(default_cache_dir()), options)
    fallback = HostNormalizingNative(LazyNativeRunner(f"paddle:{model_name}", native_factory))
    load = LoadRequest(
        name=model_name,
        model_type=model_type,
        target=target,
        precision=request.precision,
        options=options,
        engine_config=engine_config,
        fallback=fallback,
    )
    artifact = pipeline.artifact(engine_name, model_dir, model_type, target)
    try:
        inner = engine.load(artifact, load)
    except CacheError as exc:  # an artifact this engine/GPU cannot load: a miss, prepare once
        assert artifact is not None
        pipeline.cache.invalidate(artifact.entry, str(exc))
        artifact = pipeline.artifact(engine_name, model_dir, model_type, target)
        inner = engine.load(artifact, load)
    description = engine.describe(artifact, inner, load)
    return FusedEngineRunner(inner, fallback, model_name, model_type), description
