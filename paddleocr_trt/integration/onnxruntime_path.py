"""The ONNX Runtime side of the hook: cached, validated graph -> runner with a native safety net.

Runs where TensorRT cannot (no TensorRT, no GPU, CPU-only machines) and is the engine that
exercises the whole engine path (convert, validate, cache, our runner inside PaddleX) in CI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..backend.base import BaseRunner
from ..model_types import ModelType
from ..pipeline import PipelineOptions, shared_pipeline
from ..settings import default_cache_dir
from .decision import onnxruntime_provider, target_of
from .fallback import LazyNativeRunner
from .fused_runner import FusedEngineRunner, HostNormalizingNative, fused_io
from .request import TensorRTRequest


def cpu_threads(engine_config: Mapping[str, Any]) -> int | None:
    """PaddleOCR's ``cpu_threads`` (passed on CPU devices), capped at the machine's cores:
    ONNX Runtime's spinning workers lose more than they gain when oversubscribed. None lets
    ONNX Runtime choose (one per physical core)."""
    wanted = engine_config.get("cpu_threads")
    if not wanted:
        return None
    return max(1, min(int(wanted), os.cpu_count() or 1))


def onnxruntime_runner(
    *,
    model_name: str,
    model_dir: Path,
    model_type: ModelType,
    request: TensorRTRequest,
    engine_config: Mapping[str, Any],
    native_factory: Callable[[], Any],
) -> tuple[BaseRunner, str]:
    """Load (or convert, validate and cache) the model's graph; return a guarded runner."""
    from ..backend.onnxrt.runner import OnnxRuntimeRunner

    target = target_of(request, engine_config)
    provider = onnxruntime_provider(target)
    pipeline = shared_pipeline(
        str(default_cache_dir()), PipelineOptions(precision="fp32", device_id=target.device_id)
    )
    artifact = pipeline.onnxruntime_engine(
        model_dir, model_type, provider=provider, device_id=target.device_id
    )
    engine = OnnxRuntimeRunner(
        artifact.path,
        providers=[provider],
        device_id=target.device_id,
        threads=cpu_threads(engine_config) if provider == "CPUExecutionProvider" else None,
        name=model_name,
        # det's map stays in ONNX Runtime: DB box scores are summed there (postprocess.db)
        resident_outputs=[0] if model_type is ModelType.DETECTION else [],
    )
    native = HostNormalizingNative(LazyNativeRunner(f"paddle:{model_name}", native_factory))
    runner = FusedEngineRunner(engine, native, model_name, model_type)
    parts = [
        f"ONNX Runtime fp32 fused graph ({fused_io(model_type)}) on {'+'.join(engine.providers)}",
        "loaded from cache" if artifact.from_cache else "converted and validated",
        artifact.path.parent.name,
    ]
    agreement = (artifact.validation or {}).get("agreement")
    if agreement is not None:
        parts.append(f"agreement {agreement:.4f}")
    if request.precision != "fp32":
        parts.append(f"{request.precision} requested: ONNX Runtime runs the validated fp32 graph")
    return runner, ", ".join(parts)
