"""A non-default CUDA stream on one device, and the async copies issued on it.

Work on the legacy default stream synchronises with every other stream of the device; an
executor gets its own non-blocking stream so several executors (threads, models) overlap.
"""

from __future__ import annotations

import weakref
from typing import Any

from ...log import get_logger
from .runtime import check, cudart, device_scope

logger = get_logger("cuda.stream")


def _destroy_stream(device_id: int, raw: Any) -> None:
    try:
        with device_scope(device_id):
            check(cudart().cudaStreamDestroy(raw), "cudaStreamDestroy")
    except Exception as exc:
        logger.debug("cudaStreamDestroy on device %d failed: %s", device_id, exc)


class Stream:
    """``cudaStreamCreateWithFlags(cudaStreamNonBlocking)`` on ``device_id``."""

    def __init__(self, device_id: int = 0) -> None:
        rt = cudart()
        self.device_id = device_id
        with device_scope(device_id):
            self.raw = check(
                rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking),
                f"cudaStreamCreateWithFlags on device {device_id}",
            )
        #: The integer handle that TensorRT's execute_async_v3 and other libraries take.
        self.handle = int(self.raw)
        self._h2d = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._d2h = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._d2d = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        self._finalizer = weakref.finalize(self, _destroy_stream, device_id, self.raw)

    def copy_h2d(self, dst: int, src: int, nbytes: int) -> None:
        """Async host->device copy; ``src`` should be pinned for it to be truly asynchronous."""
        if nbytes:
            err = cudart().cudaMemcpyAsync(dst, src, nbytes, self._h2d, self.raw)
            check(err, "cudaMemcpyAsync H2D")

    def copy_d2h(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            err = cudart().cudaMemcpyAsync(dst, src, nbytes, self._d2h, self.raw)
            check(err, "cudaMemcpyAsync D2H")

    def copy_d2d(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            err = cudart().cudaMemcpyAsync(dst, src, nbytes, self._d2d, self.raw)
            check(err, "cudaMemcpyAsync D2D")

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self.raw), "cudaStreamSynchronize")

    def close(self) -> None:
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive
