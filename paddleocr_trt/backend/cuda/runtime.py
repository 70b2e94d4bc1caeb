"""cuda-python access in one place: lazy import, error translation, device queries, device scope.

cuda-python is an optional dependency (the ``tensorrt`` extra), so nothing here imports it at
module import time; every CUDA call goes through :func:`cudart` and :func:`check`, which turn
``(err, *results)`` tuples into values or exceptions. ``cudaErrorMemoryAllocation`` becomes
:class:`paddleocr_trt.errors.OutOfMemoryError` so callers can back off instead of crashing.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ...errors import OutOfMemoryError, PaddleOCRTRTError
from ...log import get_logger

logger = get_logger("cuda")

INSTALL_HINT = "pip install cuda-python (or the paddleocr-trt[tensorrt] extra)"


class CudaError(PaddleOCRTRTError):
    """A CUDA runtime call failed for a reason other than running out of memory."""


@functools.lru_cache(maxsize=1)
def cudart() -> ModuleType:
    """The cuda-python runtime module; raises ImportError with an install hint when missing."""
    try:
        from cuda.bindings import runtime as rt  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as rt  # older cuda-python layout
        except ImportError as exc:
            raise ImportError(f"cuda-python is not installed ({exc}); {INSTALL_HINT}") from exc
    return rt


def _error_text(err: Any) -> str:
    rt = cudart()
    name = rt.cudaGetErrorName(err)[1]
    desc = rt.cudaGetErrorString(err)[1]
    name = name.decode() if isinstance(name, bytes) else str(name)
    desc = desc.decode() if isinstance(desc, bytes) else str(desc)
    return f"{name}: {desc}"


def check(result: tuple[Any, ...], what: str) -> Any:
    """Unpack a cuda-python ``(err, *values)`` tuple: the value(s), or raise.

    Raises OutOfMemoryError for cudaErrorMemoryAllocation, CudaError otherwise.
    """
    rt = cudart()
    err = result[0]
    if err != rt.cudaError_t.cudaSuccess:
        # Clear the runtime's "last error" so a later, unrelated check does not see it again.
        rt.cudaGetLastError()
        message = f"{what} failed: {_error_text(err)}"
        if err == rt.cudaError_t.cudaErrorMemoryAllocation:
            raise OutOfMemoryError(message)
        raise CudaError(message)
    if len(result) == 1:
        return None
    if len(result) == 2:
        return result[1]
    return result[1:]


def cuda_available() -> tuple[bool, str]:
    """Whether CUDA can be used here, and a sentence saying why (not)."""
    try:
        rt = cudart()
    except ImportError as exc:
        return False, str(exc)
    err, count = rt.cudaGetDeviceCount()
    if err != rt.cudaError_t.cudaSuccess:
        rt.cudaGetLastError()
        return False, f"no usable CUDA driver/device (cudaGetDeviceCount: {_error_text(err)})"
    if count == 0:
        return False, "the CUDA driver reports no CUDA device"
    return True, f"{count} CUDA device(s) visible"


def device_count() -> int:
    return int(check(cudart().cudaGetDeviceCount(), "cudaGetDeviceCount"))


@dataclass(frozen=True)
class DeviceInfo:
    device_id: int
    name: str
    compute_capability: tuple[int, int]
    total_memory: int
    uuid: str

    @property
    def arch(self) -> str:
        """``sm_90`` style name; engines are only portable within one of these."""
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"


def _uuid_text(raw: Any) -> str:
    data = bytes(getattr(raw, "bytes", raw) or b"")
    if len(data) != 16:
        return ""
    h = data.hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def device_info(device_id: int) -> DeviceInfo:
    what = f"cudaGetDeviceProperties({device_id})"
    prop = check(cudart().cudaGetDeviceProperties(device_id), what)
    name = prop.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return DeviceInfo(
        device_id=device_id,
        name=str(name).strip(),
        compute_capability=(int(prop.major), int(prop.minor)),
        total_memory=int(prop.totalGlobalMem),
        uuid=_uuid_text(prop.uuid),
    )


def get_device() -> int:
    return int(check(cudart().cudaGetDevice(), "cudaGetDevice"))


def set_device(device_id: int) -> None:
    check(cudart().cudaSetDevice(device_id), f"cudaSetDevice({device_id})")


@contextlib.contextmanager
def device_scope(device_id: int) -> Iterator[None]:
    """Make ``device_id`` current for the block and restore the caller's device afterwards.

    Several executors on several GPUs may share one thread; each must allocate, copy and launch
    on its own device without leaving the thread switched for code that runs after it.
    """
    previous = get_device()
    if previous == device_id:
        yield
        return
    set_device(device_id)
    try:
        yield
    finally:
        set_device(previous)


def mem_get_info(device_id: int) -> tuple[int, int]:
    """(free, total) bytes on ``device_id``."""
    with device_scope(device_id):
        free, total = check(cudart().cudaMemGetInfo(), "cudaMemGetInfo")
    return int(free), int(total)
