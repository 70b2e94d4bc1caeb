"""Can this model run as a TensorRT engine here? If not, the one reason and the remedy.

Checked cheapest first; each answer is cached for the process because it cannot change while
the process lives (a library does not appear mid-run) and because every model asks.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..activation.request import TensorRTRequest

SUPPORTED_PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True)
class Availability:
    ok: bool
    code: str  # stable identifier, used to say each reason once
    reason: str = ""
    remedy: str = ""

    def message(self) -> str:
        return f"{self.reason} ({self.remedy})" if self.remedy else self.reason


READY = Availability(True, "ready")


@functools.lru_cache(maxsize=1)
def tensorrt_status() -> Availability:
    if importlib.util.find_spec("tensorrt") is None:
        return Availability(
            False,
            "tensorrt-missing",
            "TensorRT is not installed",
            "install TensorRT 10.x or 11.x for your CUDA version, e.g. "
            "pip install 'paddleocr-trt[tensorrt]', on a machine with an NVIDIA GPU",
        )
    from ..backend.trt import adapter
    from ..errors import TensorRTUnavailableError

    try:
        trt = adapter.load_tensorrt()
    except TensorRTUnavailableError as exc:
        return Availability(False, "tensorrt-unloadable", str(exc))
    return Availability(True, "ready", f"TensorRT {adapter.tensorrt_version(trt)}")


@functools.lru_cache(maxsize=1)
def cuda_status() -> Availability:
    from ..backend.cuda import runtime

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


def device_type_of(request: TensorRTRequest, engine_config: Mapping[str, Any]) -> str:
    device_type = engine_config.get("device_type")
    if device_type:
        return str(device_type).lower()
    if request.device:
        return request.device.split(":", 1)[0].lower()
    return "gpu"


def decide(request: TensorRTRequest, engine_config: Mapping[str, Any]) -> Availability:
    device_type = device_type_of(request, engine_config)
    if device_type != "gpu":
        return Availability(
            False,
            "not-a-gpu-device",
            f"use_tensorrt=True needs an NVIDIA GPU, but the device is {device_type!r}",
            "pass device='gpu' on a machine with an NVIDIA GPU",
        )
    if request.precision not in SUPPORTED_PRECISIONS:
        return Availability(
            False,
            "unsupported-precision",
            f"precision {request.precision!r} is not supported by paddleocr_trt",
            f"use one of {', '.join(SUPPORTED_PRECISIONS)}",
        )
    status = tensorrt_status()
    if not status.ok:
        return status
    return cuda_status()
