"""TensorRT-RTX-only calls: build targets, engine validity, runtime config and runtime cache.

TensorRT-RTX builds ahead of time for named compute capabilities (no GPU needed), checks a plan
against the GPU before loading it (``Runtime.get_engine_validity``: VALID / SUBOPTIMAL /
INVALID plus reasons), and specialises kernels for the actual GPU when an execution context is
made; that work lands in a runtime cache that can be saved and loaded on the next start (valid
for one TensorRT-RTX version, GPU model, OS and driver major). Every name is declared in the
manifest for the ``tensorrt-rtx`` flavor only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ....errors import EngineBuildError
from ..flavors import RTX, parse_targets
from .api import _api, _call, _has, _set, flavor_of, load_tensorrt

#: build target name -> manifest entry of its ComputeCapability member
TARGET_ENTRIES = {
    "sm75": "ComputeCapability.SM75",
    "sm80": "ComputeCapability.SM80",
    "sm86": "ComputeCapability.SM86",
    "sm89": "ComputeCapability.SM89",
    "sm120": "ComputeCapability.SM120",
    "sm121": "ComputeCapability.SM121",
}
#: EngineInvalidityDiagnostics bit -> what to tell the user
DIAGNOSTICS = {
    "EngineInvalidityDiagnostics.VERSION_MISMATCH": "built by another TensorRT-RTX version",
    "EngineInvalidityDiagnostics.UNSUPPORTED_CC": "not built for this GPU's compute capability",
    "EngineInvalidityDiagnostics.OLD_CUDA_DRIVER": "the CUDA driver is too old",
    "EngineInvalidityDiagnostics.OLD_CUDA_RUNTIME": "the CUDA runtime is too old",
    "EngineInvalidityDiagnostics.INSUFFICIENT_GPU_MEMORY": "not enough GPU memory",
    "EngineInvalidityDiagnostics.MALFORMED_ENGINE": "the plan is malformed",
    "EngineInvalidityDiagnostics.CUDA_ERROR": "CUDA error while checking",
}


def supports_targets(trt: Any | None = None) -> bool:
    """Whether the loaded flavor builds for named compute capabilities (TensorRT-RTX)."""
    return _has("IBuilderConfig.set_compute_capability", trt)


def apply_targets(config: Any, targets: Sequence[str]) -> None:
    """Set the build's target compute capabilities; EngineBuildError where the flavor cannot
    (full TensorRT builds for the GPU it runs on) or TensorRT-RTX refuses one."""
    if not targets:
        return
    if not supports_targets():
        raise EngineBuildError(
            f"build targets {', '.join(targets)} need TensorRT-RTX: full TensorRT builds for "
            "the GPU it runs on"
        )
    names = parse_targets(targets)
    _set(config, "IBuilderConfig.num_compute_capabilities", len(names))
    for index, name in enumerate(names):
        member = _api(TARGET_ENTRIES[name])
        if not _call(config, "IBuilderConfig.set_compute_capability", member, index):
            raise EngineBuildError(f"TensorRT-RTX refused build target {name}")


@dataclass(frozen=True)
class Validity:
    """``Runtime.get_engine_validity`` of a plan: status and the reasons, in words."""

    status: str  # "valid" | "suboptimal" | "invalid" | "unchecked" (full TensorRT)
    reasons: tuple[str, ...] = ()

    @property
    def loadable(self) -> bool:
        return self.status != "invalid"

    def message(self) -> str:
        return self.status + (f": {'; '.join(self.reasons)}" if self.reasons else "")


def engine_validity(runtime: Any, plan: bytes) -> Validity:
    """The plan's validity on this machine's GPU, checked before deserialising (RTX only)."""
    if flavor_of() != RTX:
        return Validity("unchecked")
    status, bits = _call(runtime, "Runtime.get_engine_validity", bytes(plan))
    names = {
        _api("EngineValidity.VALID"): "valid",
        _api("EngineValidity.SUBOPTIMAL"): "suboptimal",
        _api("EngineValidity.INVALID"): "invalid",
    }
    reasons = tuple(
        text for entry, text in DIAGNOSTICS.items() if int(bits or 0) & int(_api(entry))
    )
    return Validity(names.get(status, "invalid"), reasons)


def runtime_config(engine: Any, strategy: Any, cache: Any | None) -> Any:
    """An IRuntimeConfig with ``strategy`` and the shared runtime cache (made on first use)."""
    config = _call(engine, "ICudaEngine.create_runtime_config")
    _call(config, "IRuntimeConfig.set_execution_context_allocation_strategy", strategy)
    if cache is not None:
        _call(config, "IRuntimeConfig.set_runtime_cache", cache)
    return config


def new_runtime_cache(engine: Any, blob: bytes | None) -> tuple[Any, bool]:
    """(a runtime cache for ``engine``'s contexts, whether ``blob`` was loaded into it).

    TensorRT-RTX refuses a blob from another version, GPU model, OS or driver major (False):
    the cache then starts empty and the kernels are specialised again.
    """
    config = _call(engine, "ICudaEngine.create_runtime_config")
    cache = _call(config, "IRuntimeConfig.create_runtime_cache")
    loaded = bool(blob) and bool(_call(cache, "IRuntimeCache.deserialize", bytes(blob or b"")))
    return cache, loaded


def serialize_runtime_cache(cache: Any) -> bytes:
    return bytes(memoryview(_call(cache, "IRuntimeCache.serialize")))


def create_context(engine: Any, config: Any) -> Any:
    """``create_execution_context(runtime_config)``: kernels are specialised here."""
    return _call(engine, "ICudaEngine.create_execution_context#config", config)


def is_rtx() -> bool:
    """Whether the active flavor is TensorRT-RTX (loads it)."""
    return flavor_of(load_tensorrt()) == RTX
