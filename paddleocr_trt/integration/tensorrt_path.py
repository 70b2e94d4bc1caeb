"""The TensorRT side of the hook: cached, validated engine -> runner with a native safety net."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..backend.base import BaseRunner
from ..errors import CacheError
from ..model_types import ModelType
from ..pipeline import PipelineOptions, shared_pipeline
from ..settings import cuda_graphs_enabled, default_cache_dir
from .decision import target_of
from .fallback import LazyNativeRunner
from .fused_runner import FusedEngineRunner, HostNormalizingNative, fused_io
from .request import TensorRTRequest


def tensorrt_runner(
    *,
    model_name: str,
    model_dir: Path,
    model_type: ModelType,
    request: TensorRTRequest,
    engine_config: Mapping[str, Any],
    native_factory: Callable[[], Any],
    flavor: str = "tensorrt",
) -> tuple[BaseRunner, str]:
    """Build or load the engine for this model; return the runner and a one-line description.
    ``flavor``: full TensorRT or TensorRT-RTX (the same path; the adapter drives either)."""
    from ..backend.trt import adapter
    from ..backend.trt.flavors import LABELS
    from ..backend.trt.runner import TensorRTRunner

    adapter.select_flavor(flavor)
    # The GPU the user asked for, also where the CPU build of Paddle made PaddleX use the CPU.
    device_id = target_of(request, engine_config).device_id
    options = PipelineOptions(
        precision=request.precision,
        device_id=device_id,
        use_cuda_graphs=cuda_graphs_enabled(),
        trt_flavor=flavor,
    )
    pipeline = shared_pipeline(str(default_cache_dir()), options)
    fallback = HostNormalizingNative(LazyNativeRunner(f"paddle:{model_name}", native_factory))
    artifact = pipeline.engine(model_dir, model_type)
    graphs = {
        "use_cuda_graphs": options.use_cuda_graphs,
        "cuda_graph_cache_size": options.cuda_graph_cache_size,
        "resident_outputs": resident_outputs(model_type, artifact),
    }
    if flavor == "tensorrt-rtx":  # kernels specialised on this GPU, kept for the next start
        from ..rtx_artifact import runtime_cache_for

        graphs["runtime_cache"] = runtime_cache_for(pipeline.cache.root, artifact.entry, device_id)
    try:
        runner = TensorRTRunner(
            artifact.path, name=model_name, fallback=fallback, device_id=device_id, **graphs
        )
    except CacheError as exc:  # a plan this TensorRT/GPU cannot load: a miss, rebuild once
        pipeline.cache.invalidate(artifact.entry, str(exc))
        artifact = pipeline.engine(model_dir, model_type)
        runner = TensorRTRunner(
            artifact.path, name=model_name, fallback=fallback, device_id=device_id, **graphs
        )
    precision = artifact.entry.metadata.get("precision", request.precision)
    agreement = (artifact.validation or {}).get("agreement")
    origin = "loaded from cache" if artifact.from_cache else "built and validated"
    description = (
        f"{LABELS[flavor]} {precision} engine over the fused graph ({fused_io(model_type)}) "
        f"{origin} ({artifact.path.parent.name}"
    )
    runner = FusedEngineRunner(runner, fallback, model_name, model_type)
    if agreement is not None:
        description += f", agreement {agreement:.4f}"
    return runner, description + ")"


def resident_outputs(model_type: ModelType, artifact: Any) -> list[str]:
    """Outputs left on the GPU: det's probability map (the fused graph's first output; DB
    post-processing reads it window by window, ``postprocess.db``), nothing else."""
    if model_type is not ModelType.DETECTION:
        return []
    onnx = (getattr(artifact, "extra", None) or {}).get("onnx")
    names = onnx.entry.metadata.get("output_names") if onnx is not None else None
    return list(names[:1]) if names else []
