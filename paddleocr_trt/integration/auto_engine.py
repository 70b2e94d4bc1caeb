"""What follows the TensorRT flavors when none can run and the user gave no engine list (issue 22).

``use_tensorrt=True`` asks for the fastest validated engine. Where no TensorRT flavor can run,
the validated ONNX Runtime engine is next - but only when its provider matches the device the
request is for (CUDA provider for a GPU request, CPU provider for a CPU one) or when native
Paddle itself would run on the CPU anyway: ONNX Runtime on the CPU beats native Paddle on the
CPU (1.6-1.8x end to end, NOTES.md section 9) but not Paddle on a GPU. An explicit engine list
(``trt_engine=``, ``$PADDLEOCR_TRT_ENGINE``) is strict and never gets this step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .decision import onnxruntime_provider, onnxruntime_status, target_of
from .request import TensorRTRequest

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
ENGINE = "onnxruntime"


@dataclass(frozen=True)
class AutoChoice:
    """The engine to try after the requested ones (None: straight to native) and why."""

    engine: str | None
    why: str


def paddle_has_cuda() -> bool:
    """Whether the installed Paddle can run on a GPU at all (a CPU build runs a GPU request on
    the CPU, whatever PaddleX's engine config says)."""
    import sys

    paddle = sys.modules.get("paddle")
    if paddle is not None:  # PaddleX imported it already: ask it
        try:
            return bool(paddle.device.is_compiled_with_cuda())
        except Exception:
            return False
    from ..versions import version_of

    return version_of("paddlepaddle-gpu") is not None


def native_device(request: TensorRTRequest, engine_config: Mapping[str, Any]) -> str:
    """Where native Paddle would run this model: the CPU for a CPU build of Paddle, else
    PaddleX's own placement, else the requested device."""
    placed = str(engine_config.get("device_type") or "").lower()
    device = placed or target_of(request, engine_config).device_type
    return "cpu" if device == "gpu" and not paddle_has_cuda() else device


def automatic_engine(request: TensorRTRequest, engine_config: Mapping[str, Any]) -> AutoChoice:
    """The automatic step after ``request.engines``, for requests that named no engines."""
    if not request.automatic:
        return AutoChoice(None, "an explicit engine list is tried as given")
    if ENGINE in request.engines:
        return AutoChoice(None, "ONNX Runtime is already in the engine list")
    status = onnxruntime_status()
    if not status.ok:
        return AutoChoice(None, status.message())
    target = target_of(request, engine_config)
    if target.device_type not in ("gpu", "cpu"):
        return AutoChoice(None, f"ONNX Runtime has no provider for device {target.device_type!r}")
    provider = onnxruntime_provider(target)
    if target.device_type == "gpu" and provider == CUDA_PROVIDER:
        return AutoChoice(ENGINE, "its CUDA provider runs on the requested GPU")
    if provider == CPU_PROVIDER and native_device(request, engine_config) == "cpu":
        reason = (
            "the device is the CPU"
            if target.device_type == "cpu"
            else ("Paddle would run on the CPU too (no GPU build of Paddle)")
        )
        return AutoChoice(ENGINE, f"{reason}; ONNX Runtime's CPU provider is faster than native")
    return AutoChoice(
        None,
        "ONNX Runtime has only its CPU provider here and native Paddle runs on the GPU "
        "(install onnxruntime-gpu for the ONNX Runtime engine on the GPU)",
    )
