"""The TensorRT-RTX engine: TensorRT for RTX GPUs behind the contract, a flavor of the TensorRT
engine (same adapter, builder, runner, artifact step; ``adapter`` drives ``tensorrt-rtx``).

It runs where TensorRT-RTX runs: compute capability 8.0/8.6/8.9/12.x (GeForce RTX 30/40/50,
RTX workstation cards), not 9.0 (H100/H200). The GPU is checked before the installation, so an
H100 user hears to install full TensorRT and an RTX user to install TensorRT-RTX. Plans built
ahead of time are validated on the GPU before they are served (``rtx_artifact``); the kernels
TensorRT-RTX specialises at first use are kept in the runtime cache (``runtime_cache``).
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..contract import READY, Availability, LoadRequest, Target, unsupported_precision
from .engine import TensorRTEngine, cuda_status, tensorrt_status
from .flavors import RTX, rtx_refusal, rtx_runs_on

if TYPE_CHECKING:
    from ...artifact import Artifact
    from ...engine_graph import EngineGraph


@functools.lru_cache(maxsize=8)
def rtx_gpu_status(device_id: int) -> Availability:
    """Whether TensorRT-RTX runs on GPU ``device_id`` (by its compute capability)."""
    from ...backend.cuda.runtime import device_info

    try:
        cc = tuple(device_info(device_id).compute_capability)
    except Exception as exc:  # no driver, no such device: say why
        return Availability(False, "no-cuda-gpu", f"cannot read GPU {device_id}: {exc}")
    if not rtx_runs_on(cc):  # type: ignore[arg-type]
        return Availability(False, "rtx-unsupported-cc", rtx_refusal(cc))  # type: ignore[arg-type]
    return READY


class TensorRTRTXEngine(TensorRTEngine):
    name = RTX
    label = "TensorRT-RTX"
    flavor = RTX

    def availability(self, precision: str, target: Target) -> Availability:
        if target.device_type != "gpu":
            return Availability(
                False,
                "not-a-gpu-device",
                f"TensorRT-RTX needs an NVIDIA GPU, but the device is {target.device_type!r}",
                "pass device='gpu' on a machine with an NVIDIA RTX GPU",
            )
        for status in (
            unsupported_precision(precision),
            cuda_status(),
            rtx_gpu_status(target.device_id),
            tensorrt_status(RTX),
        ):
            if status is not None and not status.ok:
                if status.reason.startswith("TensorRT-RTX"):
                    return status
                # say which engine could not run: this may be the second step of the list
                return replace(status, reason=f"TensorRT-RTX cannot run: {status.reason}")
        return READY

    def gpu_status(self, device_id: int) -> Availability:
        """Does TensorRT-RTX run on GPU ``device_id`` (its compute capability)? Cached."""
        return rtx_gpu_status(device_id)

    def prepare_ahead_of_time(self, source: Any, graph: EngineGraph) -> tuple[Any, dict]:
        """A plan of ``graph`` built for the options' targets without a GPU, cached under its
        pending key (``optimize --target``, the self-test): (entry, what the build reported).
        Built, not run: it is validated on the target GPU at first use (``rtx_artifact``)."""
        from .artifact import rtx_pending_engine

        return rtx_pending_engine(source, graph)

    @staticmethod
    def parse_targets(value: Any) -> tuple[str, ...]:
        """``"sm86,sm89"`` -> the build targets (ValueError names the accepted ones)."""
        from .flavors import parse_targets

        return parse_targets(value)

    def runtime_cache(self, artifact: Artifact, request: LoadRequest) -> Any:
        """The kernels specialised on this GPU, kept per engine, GPU model and driver major."""
        from ...settings import default_cache_dir
        from .rtx_artifact import runtime_cache_for

        return runtime_cache_for(default_cache_dir(), artifact.entry, request.target.device_id)


ENGINE = TensorRTRTXEngine()
