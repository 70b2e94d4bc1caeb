"""The ONNX Runtime engine behind the contract (:mod:`paddleocr_trt.engines.contract`).

Runs where TensorRT cannot (no TensorRT, no GPU, CPU-only machines) and is the engine that
exercises the whole engine path (convert, validate, cache, our runner inside PaddleX) in CI.
Its folder: ``runner.py`` (one ``InferenceSession``), ``resident.py`` (det's map kept in ONNX
Runtime), ``session.py`` and the artifact step (``artifact.py``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...model_types import ModelType

if TYPE_CHECKING:  # typing only: deciding must stay cheap to import
    from ...artifact import Artifact, ArtifactSource
    from ...backend.base import BaseRunner
    from ...engine_graph import EngineGraph

from ..contract import (
    Availability,
    LoadRequest,
    Target,
    agreement_of,
    not_installed,
    origin,
    unsupported_precision,
)

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


@functools.lru_cache(maxsize=1)
def onnxruntime_status() -> Availability:
    missing = not_installed(
        "onnxruntime", "ONNX Runtime", "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA)"
    )
    if missing is not None:
        return missing
    try:
        import onnxruntime as ort
    except Exception as exc:  # a broken install: say so, run native
        return Availability(False, "onnxruntime-unloadable", f"ONNX Runtime cannot load: {exc}")
    return Availability(True, "ready", f"ONNX Runtime {ort.__version__}")


def onnxruntime_provider(target: Target) -> str:
    """CUDA when the device is a GPU and onnxruntime-gpu is installed, else the CPU provider."""
    if target.device_type == "gpu":
        import onnxruntime as ort

        if CUDA_PROVIDER in ort.get_available_providers():
            return CUDA_PROVIDER
    return CPU_PROVIDER


def cpu_threads(engine_config: Mapping[str, Any]) -> int | None:
    """PaddleOCR's ``cpu_threads`` (passed on CPU devices), capped at the machine's cores:
    ONNX Runtime's spinning workers lose more than they gain when oversubscribed. None lets
    ONNX Runtime choose (one per physical core)."""
    wanted = engine_config.get("cpu_threads")
    if not wanted:
        return None
    return max(1, min(int(wanted), os.cpu_count() or 1))


class OnnxRuntimeEngine:
    name = "onnxruntime"
    label = "ONNX Runtime"
    needs_artifact = True

    def status(self) -> Availability:
        return onnxruntime_status()

    def provider(self, target: Target) -> str:
        """The execution provider for ``target`` (ONNX Runtime's own beyond the contract)."""
        return onnxruntime_provider(target)

    def graph_runner(self, path: Path, *, name: str, provider: str = CPU_PROVIDER) -> BaseRunner:
        """Any ONNX graph in a session (the recipe checks its ONNX step with it): ONNX
        Runtime's own beyond the contract."""
        from .runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(path, providers=[provider], name=name)

    def availability(self, precision: str, target: Target) -> Availability:
        """Runs on any device; precision is the validated fp32 graph's either way."""
        return unsupported_precision(precision) or onnxruntime_status()

    def recipe_options(self, precision: str, target: Target) -> dict[str, Any]:
        return {"precision": "fp32", "device_id": target.device_id}

    def prepare(self, source: ArtifactSource, graph: EngineGraph, target: Target) -> Artifact:
        from .artifact import onnxruntime_engine

        provider = onnxruntime_provider(target)
        return onnxruntime_engine(source, graph, provider, target.device_id)

    def load(self, artifact: Artifact | None, request: LoadRequest) -> BaseRunner:
        from .runner import OnnxRuntimeRunner

        assert artifact is not None
        provider = onnxruntime_provider(request.target)
        return OnnxRuntimeRunner(
            artifact.entry.read_artifact(),  # the checked bytes are the loaded bytes (issue 19)
            providers=[provider],
            device_id=request.target.device_id,
            threads=cpu_threads(request.engine_config) if provider == CPU_PROVIDER else None,
            name=request.name,
            # det's map stays in ONNX Runtime: DB box scores are summed there (postprocess.db)
            resident_outputs=[0] if request.model_type is ModelType.DETECTION else [],
        )

    def describe(self, artifact: Artifact | None, runner: BaseRunner, request: LoadRequest) -> str:
        from ...fusion.artifacts import fused_io

        assert artifact is not None
        providers = getattr(runner, "providers", [])
        parts = [
            f"ONNX Runtime fp32 fused graph ({fused_io(request.model_type)}) on "
            f"{'+'.join(providers)}",
            origin(artifact, "converted and validated"),
            artifact.path.parent.name,
        ]
        agreement = agreement_of(artifact)
        if agreement is not None:
            parts.append(f"agreement {agreement:.4f}")
        if request.precision != "fp32":
            parts.append(
                f"{request.precision} requested: ONNX Runtime runs the validated fp32 graph"
            )
        return ", ".join(parts)


ENGINE = OnnxRuntimeEngine()
