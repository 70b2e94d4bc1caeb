"""Version dispatch: pure decisions about TensorRT 10.x / 10.12+ / 11.x, given the module.

Each function takes the module object so the conformance test can call it with the real 10.x
and 11.x bindings. TensorRT 10.12 deprecated ``BuilderFlag.FP16`` ("superseded by strong
typing") and 11.0 removed it, so from 10.12 on an FP16 engine is built the 11.x way: a strongly
typed network from an fp16 ONNX with fp32 I/O; the flag path remains only below 10.12.
"""

from __future__ import annotations

from typing import Any

from ..config import BuildSettings
from .api import _api, _has, _mod, version_tuple

#: First release whose FP16 comes from strong typing (BuilderFlag.FP16 deprecated there).
STRONGLY_TYPED_FROM = (10, 12)


def strongly_typed_for_version(version: tuple[int, int]) -> bool:
    """True from 10.12 on: build strongly typed networks from (fp16) typed ONNX."""
    return tuple(version) >= STRONGLY_TYPED_FROM


def decide_strongly_typed(trt: Any) -> bool:
    """11.x networks are always strongly typed; 10.12+ deprecate the FP16 flag for it."""
    return strongly_typed_for_version(version_tuple(trt))


def decide_network_flags(trt: Any) -> int:
    """Creation flags: STRONGLY_TYPED from 10.12; the (no-op but still accepted) EXPLICIT_BATCH on
    older 10.x releases that still have it. Bit positions come from the enum, never literals."""
    if decide_strongly_typed(trt):
        return 1 << int(_api("NetworkDefinitionCreationFlag.STRONGLY_TYPED", trt))
    if _has("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", trt):
        return 1 << int(_api("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", trt))
    return 0


def decide_builder_flags(trt: Any, settings: BuildSettings, *, pinned: bool) -> list[str]:
    """Manifest names of the BuilderFlags to set. FP16 and precision constraints only below
    10.12: strongly typed builds take precision from the (fp16) ONNX itself."""
    flags: list[str] = []
    if settings.tf32:
        flags.append("BuilderFlag.TF32")
    if not decide_strongly_typed(trt):
        if settings.precision == "fp16":
            flags.append("BuilderFlag.FP16")
        if pinned:
            flags.append(
                "BuilderFlag.OBEY_PRECISION_CONSTRAINTS"
                if settings.obey_precision_constraints
                else "BuilderFlag.PREFER_PRECISION_CONSTRAINTS"
            )
    return flags


def decide_layer_pinning(trt: Any, settings: BuildSettings) -> bool:
    """Per-layer FP32 pinning in the network: only for flag-path FP16 (below 10.12)."""
    return (
        settings.precision == "fp16"
        and bool(settings.fp32_layers)
        and not decide_strongly_typed(trt)
    )


def fp16_needs_fp16_onnx(trt: Any | None = None) -> bool:
    """True when an FP16 engine must be built from an fp16 ONNX (10.12+ and 11.x)."""
    return decide_strongly_typed(_mod(trt))


def decide_device_memory_property(trt: Any) -> str | None:
    """``device_memory_size_v2`` (10.x later releases, 11.x), else the 10.x original."""
    if _has("ICudaEngine.device_memory_size_v2", trt):
        return "ICudaEngine.device_memory_size_v2"
    if _has("ICudaEngine.device_memory_size", trt):
        return "ICudaEngine.device_memory_size"
    return None


def decide_profile_memory_method(trt: Any) -> str | None:
    """Per-profile device memory query (10.x later releases, 11.x), None where absent."""
    if _has("ICudaEngine.get_device_memory_size_for_profile_v2", trt):
        return "ICudaEngine.get_device_memory_size_for_profile_v2"
    return None
