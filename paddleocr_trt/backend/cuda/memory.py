"""Device and pinned host buffers that grow on demand and are reused across calls.

Allocation is slow and fragments memory, so a buffer keeps its allocation while requests fit
and grows geometrically when they do not; a caller that caches anything holding the address
(a CUDA graph) must re-check :attr:`ptr` after :meth:`ensure` reports a reallocation.
"""

from __future__ import annotations

import weakref

import numpy as np

from ...errors import OutOfMemoryError
from ...log import get_logger
from .runtime import check, cudart, device_scope

logger = get_logger("cuda.memory")


def _free_device(device_id: int, ptr: int) -> None:
    try:
        with device_scope(device_id):
            check(cudart().cudaFree(ptr), "cudaFree")
    except Exception as exc:  # interpreter shutdown or a dead context: nothing left to do
        logger.debug("cudaFree(%#x) on device %d failed: %s", ptr, device_id, exc)


def _free_host(ptr: int) -> None:
    try:
        check(cudart().cudaFreeHost(ptr), "cudaFreeHost")
    except Exception as exc:
        logger.debug("cudaFreeHost(%#x) failed: %s", ptr, exc)


class _GrowableBuffer:
    """Shared grow/free bookkeeping; subclasses say how to allocate and free."""

    kind = "buffer"

    def __init__(self, *, growth: float = 2.0) -> None:
        if growth < 1.0:
            raise ValueError(f"growth must be >= 1.0, got {growth}")
        self.growth = growth
        self.ptr = 0
        self.capacity = 0
        self._finalizer: weakref.finalize | None = None

    def _allocate(self, nbytes: int) -> int:
        raise NotImplementedError

    def _finalize(self, ptr: int) -> weakref.finalize | None:
        raise NotImplementedError

    def _adopt(self, ptr: int, nbytes: int) -> None:
        self.ptr = ptr
        self.capacity = nbytes

    def ensure(self, nbytes: int) -> bool:
        """Make room for ``nbytes``; True when the buffer was reallocated (its address changed).

        Contents are not preserved. The old allocation is released first so its memory can
        serve the new one; if the geometric size does not fit, the exact size is tried before
        OutOfMemoryError is raised (the buffer is then empty).
        """
        if nbytes <= self.capacity:
            return False
        target = nbytes if self.capacity == 0 else max(nbytes, int(self.capacity * self.growth))
        self.free()
        try:
            ptr = self._allocate(target)
        except OutOfMemoryError:
            if target == nbytes:
                raise
            logger.debug("%s: %d bytes did not fit; trying exactly %d", self.kind, target, nbytes)
            target = nbytes
            ptr = self._allocate(target)
        self._adopt(ptr, target)
        self._finalizer = self._finalize(ptr)
        return True

    def free(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self.ptr = 0
        self.capacity = 0

    close = free

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ptr={self.ptr:#x}, capacity={self.capacity})"


class DeviceBuffer(_GrowableBuffer):
    """``cudaMalloc`` memory on one device."""

    kind = "device buffer"

    def __init__(self, device_id: int = 0, *, growth: float = 2.0) -> None:
        super().__init__(growth=growth)
        self.device_id = device_id

    def _allocate(self, nbytes: int) -> int:
        with device_scope(self.device_id):
            ptr = check(
                cudart().cudaMalloc(nbytes), f"cudaMalloc({nbytes}) on device {self.device_id}"
            )
        return int(ptr)

    def _finalize(self, ptr: int) -> weakref.finalize:
        return weakref.finalize(self, _free_device, self.device_id, ptr)


class _PinnedAllocation:
    """One ``cudaHostAlloc`` block, freed when the last reference (buffer or numpy view) dies.

    Numpy views handed to callers keep this object alive through their ``base`` chain, so a view
    that outlives a reallocation (or ``free()``) still points at live memory instead of freed
    pages; only its contents stop being updated.
    """

    def __init__(self, ptr: int, nbytes: int) -> None:
        self.ptr = ptr
        self.nbytes = nbytes
        self.__array_interface__ = {
            "shape": (nbytes,),
            "typestr": "|u1",
            "data": (ptr, False),
            "version": 3,
        }
        self._finalizer = weakref.finalize(self, _free_host, ptr)


class PinnedBuffer(_GrowableBuffer):
    """Page-locked host memory (portable across devices) with numpy views over it.

    Async copies from pageable memory are staged by the driver and serialise with the host;
    from pinned memory they run on the copy engines at full link speed. Views keep their
    allocation alive (see :class:`_PinnedAllocation`), so they never dangle.
    """

    kind = "pinned buffer"

    def __init__(self, *, growth: float = 2.0) -> None:
        super().__init__(growth=growth)
        self._bytes: np.ndarray = np.empty(0, dtype=np.uint8)

    def _allocate(self, nbytes: int) -> int:
        rt = cudart()
        ptr = check(rt.cudaHostAlloc(nbytes, rt.cudaHostAllocPortable), f"cudaHostAlloc({nbytes})")
        return int(ptr)

    def _adopt(self, ptr: int, nbytes: int) -> None:
        super()._adopt(ptr, nbytes)
        self._bytes = np.asarray(_PinnedAllocation(ptr, nbytes))

    def _finalize(self, ptr: int) -> None:
        return None  # the _PinnedAllocation behind self._bytes owns the memory

    def free(self) -> None:
        """Drop this buffer's reference; the memory goes once no view of it is left."""
        self._bytes = np.empty(0, dtype=np.uint8)
        super().free()

    def view(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """A C-contiguous array over the first bytes of the buffer.

        After a later ensure() that reallocates, or free(), the view stays valid memory but is
        no longer this buffer's: writes to it no longer reach the device.
        """
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if nbytes > self.capacity:
            raise ValueError(f"view of {nbytes} bytes exceeds capacity {self.capacity}")
        return self._bytes[:nbytes].view(dt).reshape(shape)

    def holds(self, array: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> bool:
        """True when ``array`` is exactly view(shape, dtype) of the current allocation."""
        return (
            self.ptr != 0
            and array.dtype == dtype
            and tuple(array.shape) == tuple(shape)
            and array.flags.c_contiguous
            and array.__array_interface__["data"][0] == self.ptr
        )
