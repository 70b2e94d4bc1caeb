"""Can this model run on one of our engines here? If not, the one reason and the remedy.

Checked cheapest first; each answer is cached for the process because it cannot change while
the process lives (a library does not appear mid-run) and because every model asks.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .request import TensorRTRequest

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


def _not_installed(module: str, name: str, remedy: str) -> Availability | None:
    """The "not installed" answer for an engine whose module cannot be found, else None."""
    if importlib.util.find_spec(module) is not None:
        return None
    return Availability(False, f"{module}-missing", f"{name} is not installed", remedy)


@functools.lru_cache(maxsize=2)
def tensorrt_status(flavor: str = "tensorrt") -> Availability:
    """Whether a TensorRT flavor (``tensorrt`` or ``tensorrt-rtx``) is installed and loads."""
    from ..backend.trt import adapter
    from ..backend.trt.flavors import INSTALL, LABELS, RTX
    from ..errors import TensorRTUnavailableError

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


@functools.lru_cache(maxsize=8)
def rtx_gpu_status(device_id: int) -> Availability:
    """Whether TensorRT-RTX runs on GPU ``device_id`` (by its compute capability)."""
    from ..backend.cuda.runtime import device_info
    from ..backend.trt.flavors import rtx_refusal, rtx_runs_on

    try:
        cc = tuple(device_info(device_id).compute_capability)
    except Exception as exc:  # no driver, no such device: say why
        return Availability(False, "no-cuda-gpu", f"cannot read GPU {device_id}: {exc}")
    if not rtx_runs_on(cc):  # type: ignore[arg-type]
        return Availability(False, "rtx-unsupported-cc", rtx_refusal(cc))  # type: ignore[arg-type]
    return READY


def decide_rtx(request: TensorRTRequest, engine_config: Mapping[str, Any]) -> Availability:
    """TensorRT-RTX: a GPU it runs on (checked before whether it is installed, so an H100 user
    hears to install full TensorRT, an RTX user to install TensorRT-RTX)."""
    target = target_of(request, engine_config)
    if target.device_type != "gpu":
        return Availability(
            False,
            "not-a-gpu-device",
            f"TensorRT-RTX needs an NVIDIA GPU, but the device is {target.device_type!r}",
            "pass device='gpu' on a machine with an NVIDIA RTX GPU",
        )
    for status in (
        _unsupported_precision(request),
        cuda_status(),
        rtx_gpu_status(target.device_id),
        tensorrt_status("tensorrt-rtx"),
    ):
        if status is not None and not status.ok:
            if status.reason.startswith("TensorRT-RTX"):
                return status
            # say which engine could not run: this may be the second step of the list
            return replace(status, reason=f"TensorRT-RTX cannot run: {status.reason}")
    return READY


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


@dataclass(frozen=True)
class Target:
    """The device the user asked for: ``device="gpu"`` stays a GPU request even where the CPU
    build of Paddle made PaddleX fall back to the CPU (our engines do not need Paddle's GPU)."""

    device_type: str
    device_id: int


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


def _unsupported_precision(request: TensorRTRequest) -> Availability | None:
    if request.precision in SUPPORTED_PRECISIONS:
        return None
    return Availability(
        False,
        "unsupported-precision",
        f"precision {request.precision!r} is not supported by paddleocr_trt",
        f"use one of {', '.join(SUPPORTED_PRECISIONS)}",
    )


def decide(request: TensorRTRequest, engine_config: Mapping[str, Any]) -> Availability:
    """The TensorRT engine's answer (the default engine)."""
    device_type = device_type_of(request, engine_config)
    if device_type != "gpu":
        return Availability(
            False,
            "not-a-gpu-device",
            f"use_tensorrt=True needs an NVIDIA GPU, but the device is {device_type!r}",
            "pass device='gpu' on a machine with an NVIDIA GPU",
        )
    unsupported = _unsupported_precision(request)
    if unsupported is not None:
        return unsupported
    status = tensorrt_status()
    if not status.ok:
        return status
    return cuda_status()


@functools.lru_cache(maxsize=1)
def onnxruntime_status() -> Availability:
    missing = _not_installed(
        "onnxruntime", "ONNX Runtime", "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA)"
    )
    if missing is not None:
        return missing
    try:
        import onnxruntime as ort
    except Exception as exc:  # a broken install: say so, run native
        return Availability(False, "onnxruntime-unloadable", f"ONNX Runtime cannot load: {exc}")
    return Availability(True, "ready", f"ONNX Runtime {ort.__version__}")


CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def onnxruntime_provider(target: Target) -> str:
    """CUDA when the device is a GPU and onnxruntime-gpu is installed, else the CPU provider."""
    if target.device_type == "gpu":
        import onnxruntime as ort

        if CUDA_PROVIDER in ort.get_available_providers():
            return CUDA_PROVIDER
    return CPU_PROVIDER


def decide_onnxruntime(request: TensorRTRequest, engine_config: Mapping[str, Any]) -> Availability:
    """ONNX Runtime runs on any device; precision is the validated fp32 graph's either way."""
    return _unsupported_precision(request) or onnxruntime_status()


def decide_engine(
    engine: str, request: TensorRTRequest, engine_config: Mapping[str, Any]
) -> Availability:
    if engine == "onnxruntime":
        return decide_onnxruntime(request, engine_config)
    if engine == "tensorrt-rtx":
        return decide_rtx(request, engine_config)
    return decide(request, engine_config)
