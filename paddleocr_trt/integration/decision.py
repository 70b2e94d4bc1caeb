"""Can this model run on one of our engines here? If not, the one reason and the remedy.

Each engine answers for itself through the contract (``engines/<name>/engine.py``,
``availability``); this module turns the user's request and PaddleX's engine config into the
:class:`Target` device and keeps the names callers use (``decide``, ``tensorrt_status``, ...).
The engines cache their answers for the process: a library does not appear mid-run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..engines import registry
from ..engines.contract import (
    READY,
    SUPPORTED_PRECISIONS,
    Availability,
    Target,
)
from .request import TensorRTRequest

__all__ = [
    "READY",
    "SUPPORTED_PRECISIONS",
    "Availability",
    "Target",
    "cuda_status",
    "decide",
    "decide_engine",
    "decide_onnxruntime",
    "device_type_of",
    "onnxruntime_provider",
    "onnxruntime_status",
    "rtx_gpu_status",
    "target_of",
    "tensorrt_status",
]


def target_of(request: TensorRTRequest, engine_config: Mapping[str, Any]) -> Target:
    config_type = str(engine_config.get("device_type") or "").lower()
    config_id = engine_config.get("device_id")
    if request.device:
        kind, _, ids = request.device.partition(":")
        kind = kind.strip().lower()
        if config_type == kind and config_id is not None:  # PaddleX's per-device pipeline
            return Target(kind, int(config_id))
        first = ids.split(",")[0].strip()
        return Target(kind, int(first) if first.isdigit() else 0)
    if config_type:
        return Target(config_type, int(config_id or 0))
    return Target("gpu", 0)


def device_type_of(request: TensorRTRequest, engine_config: Mapping[str, Any]) -> str:
    return target_of(request, engine_config).device_type


def decide_engine(
    engine: str, request: TensorRTRequest, engine_config: Mapping[str, Any]
) -> Availability:
    """``engine``'s answer for this request on the device PaddleX is configured for."""
    target = target_of(request, engine_config)
    return registry.engine(engine).availability(request.precision, target)


def decide(request: TensorRTRequest, engine_config: Mapping[str, Any]) -> Availability:
    """The TensorRT engine's answer (the default engine)."""
    return decide_engine("tensorrt", request, engine_config)


def decide_onnxruntime(request: TensorRTRequest, engine_config: Mapping[str, Any]) -> Availability:
    """ONNX Runtime runs on any device; precision is the validated fp32 graph's either way."""
    return decide_engine("onnxruntime", request, engine_config)


def tensorrt_status(flavor: str = "tensorrt") -> Availability:
    """Is TensorRT (or, ``flavor="tensorrt-rtx"``, TensorRT-RTX) installed and loadable?"""
    return registry.engine(flavor).status()


def rtx_gpu_status(device_id: int) -> Availability:
    """Does TensorRT-RTX run on GPU ``device_id`` (its compute capability)?"""
    return registry.engine("tensorrt-rtx").gpu_status(device_id)


def cuda_status() -> Availability:
    """Is there a usable CUDA GPU (what TensorRT engines need besides TensorRT)?"""
    return registry.engine("tensorrt").device_status()


def onnxruntime_status() -> Availability:
    """Is ONNX Runtime installed and loadable?"""
    return registry.engine("onnxruntime").status()


def onnxruntime_provider(target: Target) -> str:
    """CUDA when the device is a GPU and onnxruntime-gpu is installed, else the CPU provider."""
    return registry.engine("onnxruntime").provider(target)
