"""The TensorRT engine behind the contract (:mod:`paddleocr_trt.engines.contract`).

Its folder holds everything TensorRT: ``adapter/`` (every ``tensorrt`` call), ``builder.py``,
``runner.py``, ``input_views.py``, ``config.py``, the isolated attempts (``attempts.py`` ->
``attempt_worker.py`` in a child) and the artifact step (``artifact.py``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...model_types import ModelType

if TYPE_CHECKING:  # typing only: deciding must stay cheap to import
    from ...artifact import Artifact, ArtifactSource
    from ...backend.base import BaseRunner
    from ...engine_graph import EngineGraph

from ..contract import (
    READY,
    Availability,
    LoadRequest,
    Target,
    agreement_of,
    origin,
    unsupported_precision,
)
from .flavors import FULL, INSTALL, LABELS, RTX


@functools.lru_cache(maxsize=2)
def tensorrt_status(flavor: str = FULL) -> Availability:
    """Whether a TensorRT flavor (``tensorrt`` or ``tensorrt-rtx``) is installed and loads."""
    from ...errors import TensorRTUnavailableError
    from . import adapter

    if not adapter.flavor_installed(flavor):
        remedy = (
            "install TensorRT 10.x or 11.x for your CUDA version, e.g. "
            "pip install 'paddleocr-trt[tensorrt]', on a machine with an NVIDIA GPU"
            if flavor != RTX
            else INSTALL[RTX]
        )
        return Availability(
            False, f"{flavor}-missing", f"{LABELS[flavor]} is not installed", remedy
        )
    try:
        trt = adapter.load_tensorrt(flavor)
    except TensorRTUnavailableError as exc:
        return Availability(False, f"{flavor}-unloadable", str(exc))
    return Availability(True, "ready", adapter.engine_label(trt))


@functools.lru_cache(maxsize=1)
def cuda_status() -> Availability:
    from ...backend.cuda import runtime

    ok, reason = runtime.cuda_available()
    if ok:
        return READY
    return Availability(
        False,
        "no-cuda-gpu",
        f"no usable CUDA GPU: {reason}",
        "TensorRT engines need an NVIDIA GPU with a working driver and cuda-python "
        "(pip install 'paddleocr-trt[tensorrt]')",
    )


def resident_outputs(model_type: ModelType, artifact: Any) -> list[str]:
    """Outputs left on the GPU: det's probability map (the fused graph's first output; DB
    post-processing reads it window by window, ``postprocess.db``), nothing else."""
    if model_type is not ModelType.DETECTION:
        return []
    onnx = (getattr(artifact, "extra", None) or {}).get("onnx")
    names = onnx.entry.metadata.get("output_names") if onnx is not None else None
    return list(names[:1]) if names else []


class TensorRTEngine:
    name = "tensorrt"
    label = "TensorRT"
    needs_artifact = True
    #: the adapter flavor this engine drives (TensorRT-RTX: ``rtx_engine``)
    flavor = FULL

    def status(self) -> Availability:
        return tensorrt_status(self.flavor)

    def device_status(self) -> Availability:
        """A usable CUDA GPU (TensorRT's own beyond the contract)."""
        return cuda_status()

    def availability(self, precision: str, target: Target) -> Availability:
        if target.device_type != "gpu":
            return Availability(
                False,
                "not-a-gpu-device",
                f"use_tensorrt=True needs an NVIDIA GPU, but the device is {target.device_type!r}",
                "pass device='gpu' on a machine with an NVIDIA GPU",
            )
        unsupported = unsupported_precision(precision)
        if unsupported is not None:
            return unsupported
        status = tensorrt_status()
        if not status.ok:
            return status
        return cuda_status()

    def recipe_options(self, precision: str, target: Target) -> dict[str, Any]:
        from ...settings import cuda_graphs_enabled

        return {
            "precision": precision,
            "device_id": target.device_id,
            "use_cuda_graphs": cuda_graphs_enabled(),
            "trt_flavor": self.flavor,
        }

    def prepare(self, source: ArtifactSource, graph: EngineGraph, target: Target) -> Artifact:
        from . import adapter
        from .artifact import engine_build, keyed, tensorrt_engine

        adapter.select_flavor(self.flavor)
        build = keyed(source, graph, engine_build(source.options, graph))
        return tensorrt_engine(source, graph, build)  # type: ignore[arg-type]

    def load(self, artifact: Artifact | None, request: LoadRequest) -> BaseRunner:
        from . import adapter
        from .runner import TensorRTRunner

        assert artifact is not None
        adapter.select_flavor(self.flavor)
        return TensorRTRunner(
            artifact.entry.read_artifact(),  # the checked bytes are the loaded bytes (issue 19)
            name=request.name,
            fallback=request.fallback,
            device_id=request.target.device_id,
            use_cuda_graphs=request.options.use_cuda_graphs,
            cuda_graph_cache_size=request.options.cuda_graph_cache_size,
            resident_outputs=resident_outputs(request.model_type, artifact),
            runtime_cache=self.runtime_cache(artifact, request),
        )

    def runtime_cache(self, artifact: Artifact, request: LoadRequest) -> Any:
        """Full TensorRT keeps none (TensorRT-RTX: ``rtx_engine``)."""
        return None

    def describe(self, artifact: Artifact | None, runner: BaseRunner, request: LoadRequest) -> str:
        from ...fusion.artifacts import fused_io

        assert artifact is not None
        precision = artifact.entry.metadata.get("precision", request.precision)
        description = (
            f"{self.label} {precision} engine over the fused graph "
            f"({fused_io(request.model_type)}) "
            f"{origin(artifact, 'built and validated')} ({artifact.path.parent.name}"
        )
        agreement = agreement_of(artifact)
        if agreement is not None:
            description += f", agreement {agreement:.4f}"
        return description + ")"

    # -- TensorRT's own, beyond the contract ----------------------------------------------

    def plan_runner(self, plan: Path, *, device_id: int = 0) -> BaseRunner:
        """A runner over a plan file, no fallback (the optimizer's and the CLI's latency and
        benchmark sweeps)."""
        from .runner import TensorRTRunner

        return TensorRTRunner(plan, device_id=device_id)

    def flavor_advice(self, cuda: dict[str, Any], builds: dict[str, Any]) -> dict[str, Any]:
        """Which TensorRT flavor fits this machine's first GPU and driver, and its install line
        (``doctor``); ``cuda`` and ``builds`` are doctor's CUDA and build reports."""
        from .flavor_advice import flavor_advice

        return flavor_advice(cuda, builds)

    def entry_status(self, entry: Any) -> str | None:
        """For a TensorRT-RTX cache entry, whether and where its plan was validated (``cache
        list``); None for any other entry."""
        from .rtx_artifact import rtx_status

        return rtx_status(entry)

    def timing_cache_dir(self, cache_root: Path) -> Path | None:
        from .artifact import timing_cache_dir

        return timing_cache_dir(cache_root)


ENGINE = TensorRTEngine()
