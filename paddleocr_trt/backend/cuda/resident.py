"""Engine outputs that stay in device memory; the host copies only the windows it reads.

Why: DB post-processing needs the det probability map only inside candidate boxes, so copying
the whole float32 map to the host is wasted transfer (see ``postprocess/resident.py`` for the
contract). A :class:`DeviceResidentMap` *leases* one device buffer from its executor's
:class:`ResidentPool`: the executor binds another buffer for its next call, so a map stays valid
while det already runs the next image, and the buffer goes back to the pool on ``release()``
(or when the map is garbage-collected).

Ordering: ``CudaExecutor.run`` synchronises its stream before it returns a map, so the engine's
writes are complete. A window is one synchronous ``cudaMemcpy2D`` (legacy default stream) into
pageable host memory; the executor's stream is non-blocking, so the copy neither waits for nor
disturbs the executor's next call, and it does not need to: that call writes other buffers.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...log import get_logger, warn_once
from ...postprocess.resident import MaskedWindow, OnFetch, check_window
from .masked_sum import device_masked_sums
from .memory import DeviceBuffer, PinnedBuffer
from .runtime import check, cudart, device_scope
from .stream import Stream

logger = get_logger("cuda.resident")

#: Live leases of one output beyond which the pool warns (maps that are never released).
LEASE_WARN = 16


class ResidentPool:
    """Device buffers for one resident output: free ones are reused, leased ones are kept.

    ``acquire`` returns the most recently returned buffer (LIFO), so a caller that releases each
    map before the next call keeps binding the same address and its CUDA graphs keep hitting.
    Thread-safe: maps are released from other threads than the executor's. After ``close``
    every buffer is freed (leased ones too) and a buffer given back is simply dropped.
    """

    def __init__(self, device_id: int, name: str = "output") -> None:
        self.device_id = device_id
        self.name = name
        self.lock = threading.Lock()
        self.closed = False
        self._free: list[DeviceBuffer] = []
        self._leased: dict[int, DeviceBuffer] = {}  # id(buffer) -> buffer
        #: buffers ever created (a pool that keeps growing means maps are not released)
        self.created = 0
        #: batched window reads (``DeviceResidentMap.windows``): a stream and pinned staging,
        #: made on first use and used under ``lock``
        self._read_stream: Stream | None = None
        self._staging = PinnedBuffer()
        #: more helpers made on first use under ``lock`` (masked-sum staging); closed with it
        self.extras: dict[str, Any] = {}

    def stream(self) -> Stream:
        """The pool's own stream for reads (made on first use); caller holds ``lock``."""
        if self._read_stream is None:
            self._read_stream = Stream(self.device_id)
        return self._read_stream

    def read_batch(self, copies: Sequence[tuple[int, int, int, int]], total: int) -> np.ndarray:
        """Run ``(src, spitch, width, height)`` device copies back to back into pinned staging
        with one sync; returns the staged bytes (a view, valid until the next batch). Caller
        holds ``lock``."""
        rt = cudart()
        with device_scope(self.device_id):
            stream = self.stream()
            self._staging.ensure(total)
            kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
            dst = self._staging.ptr
            raw = stream.raw
            for src, spitch, width, height in copies:
                err = rt.cudaMemcpy2DAsync(dst, width, src, spitch, width, height, kind, raw)
                check(err, "cudaMemcpy2DAsync D2H (resident windows)")
                dst += width * height
            stream.synchronize()
        return self._staging.view((total,), np.uint8)

    @property
    def free_count(self) -> int:
        return len(self._free)

    @property
    def leased_count(self) -> int:
        return len(self._leased)

    def acquire(self) -> DeviceBuffer:
        """A buffer for the next call (a new, empty one when none is free); now leased."""
        with self.lock:
            if self.closed:
                raise RuntimeError(f"resident pool of {self.name} used after close")
            if self._free:
                buf = self._free.pop()
            else:
                buf = DeviceBuffer(self.device_id)
                self.created += 1
            self._leased[id(buf)] = buf
            if len(self._leased) > LEASE_WARN:
                warn_once(
                    ("resident-leases", self.name),
                    "%d resident maps of %s are alive; release() the maps you have read",
                    len(self._leased),
                    self.name,
                )
            return buf

    def give_back(self, buf: DeviceBuffer) -> None:
        """End a lease; the buffer is reused (or freed when the pool is closed)."""
        with self.lock:
            if self._leased.pop(id(buf), None) is None:
                return  # already given back (release() then the finalizer, or after close)
            if self.closed:
                buf.free()
            else:
                self._free.append(buf)

    def close(self) -> None:
        """Free every buffer, leased ones included; their maps then raise on read."""
        with self.lock:
            self.closed = True
            for buf in (*self._free, *self._leased.values()):
                buf.free()
            self._free.clear()
            self._leased.clear()
            self._staging.free()
            for extra in self.extras.values():
                extra.close()
            self.extras.clear()
            if self._read_stream is not None:
                self._read_stream.close()


class ResidentOutputs:
    """An executor's resident outputs: one pool each, a buffer leased into its slot per call.

    Why a slot: the executor binds, captures and keys graphs by ``dev_out[i]``; a resident
    output's slot holds this call's leased buffer and an empty placeholder otherwise.
    """

    def __init__(
        self,
        device_id: int,
        outputs: Sequence[int | str],
        names: Sequence[str] | None,
        count: int,
    ) -> None:
        self.device_id = device_id
        self._names = names
        self._count = count
        self.pools = {
            i: ResidentPool(device_id, self.label(i))
            for i in resident_indices(outputs, names, count)
        }

    def __contains__(self, index: int) -> bool:
        return index in self.pools

    def label(self, index: int) -> str:
        name = self._names[index] if self._names is not None else None
        return f"output {index}" + (f" ({name!r})" if name else "")

    def pool(self, output: int | str) -> ResidentPool:
        index = resident_indices([output], self._names, self._count)[0]
        if index not in self.pools:
            raise KeyError(f"{self.label(index)} is not resident")
        return self.pools[index]

    def bind(self, slots: list[DeviceBuffer]) -> dict[int, DeviceBuffer]:
        leased: dict[int, DeviceBuffer] = {}
        try:
            for index, pool in self.pools.items():
                leased[index] = slots[index] = pool.acquire()
        except BaseException:
            self.unbind(slots, leased, give_back=True)
            raise
        return leased

    def unbind(
        self, slots: list[DeviceBuffer], leased: dict[int, DeviceBuffer], *, give_back: bool
    ) -> None:
        """Empty the slots; the buffers go back to their pools, or on to their maps."""
        for index, buf in leased.items():
            slots[index] = DeviceBuffer(self.device_id)  # no allocation until ensure()
            if give_back:
                self.pools[index].give_back(buf)

    def check_shapes(self, out_shapes: Sequence[tuple[int, ...]]) -> None:
        for i in self.pools:
            if len(out_shapes[i]) != 4:
                raise ValueError(
                    f"resident {self.label(i)} must be (N, C, H, W), got shape {out_shapes[i]}"
                )

    def fit(
        self,
        slots: Sequence[DeviceBuffer],
        out_shapes: Sequence[tuple[int, ...]],
        dtypes: Sequence[np.dtype],
    ) -> bool:
        """Whether every leased buffer holds its output: always while graphs are cleared on
        each (re)allocation, checked because a replay into a smaller buffer would corrupt."""
        return all(
            slots[i].capacity >= int(np.prod(out_shapes[i], dtype=np.int64)) * dtypes[i].itemsize
            for i in self.pools
        )

    def close(self, slots: list[DeviceBuffer]) -> None:
        for index, pool in self.pools.items():
            slots[index] = DeviceBuffer(self.device_id)
            pool.close()


class _Lease:
    """What a map's finalizer needs (never the map itself): the pool and its buffer."""

    def __init__(self, pool: ResidentPool, buf: DeviceBuffer) -> None:
        self.pool = pool
        self.buf = buf
        self.active = True

    def end(self) -> None:
        if self.active:
            self.active = False
            self.pool.give_back(self.buf)


def _end_lease(lease: _Lease) -> None:
    try:
        lease.end()
    except Exception as exc:  # a finalizer must not raise (interpreter shutdown)
        logger.debug("returning a resident buffer failed: %s", exc)


class DeviceResidentMap:
    """:class:`~paddleocr_trt.postprocess.resident.ResidentMap` over a leased device buffer.

    ``window`` is an exact copy of ``[b, c, y0:y1, x0:x1]`` (one ``cudaMemcpy2D``, device pitch
    W * itemsize); ``fetched_bytes`` counts what was copied. Read after ``release()`` or after
    the executor was closed raises RuntimeError.
    """

    nbytes = 0  # what crossed the engine boundary when the output was returned

    def __init__(
        self,
        pool: ResidentPool,
        buf: DeviceBuffer,
        shape: Sequence[int],
        dtype: np.dtype | type,
        on_fetch: OnFetch | None = None,
    ) -> None:
        self.shape = tuple(int(d) for d in shape)
        if len(self.shape) != 4:
            raise ValueError(f"a resident map is (N, C, H, W), got shape {self.shape}")
        self.dtype = np.dtype(dtype)
        need = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        if need > buf.capacity:
            raise ValueError(f"map of {need} bytes over a buffer of {buf.capacity}")
        self.device_id = pool.device_id
        self.fetched_bytes = 0
        self.on_fetch = on_fetch
        self._count_lock = threading.Lock()
        self._lease = _Lease(pool, buf)
        self._finalizer = weakref.finalize(self, _end_lease, self._lease)

    @property
    def released(self) -> bool:
        return not self._lease.active

    @property
    def device_ptr(self) -> int:
        """The map's device address (0 once released): for an engine that reads it in place."""
        return self._lease.buf.ptr if self._lease.active else 0

    def window(self, b: int, c: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        check_window(self.shape, b, c, y0, y1, x0, x1)
        _, channels, h, w = self.shape
        isz = self.dtype.itemsize
        out = np.empty((y1 - y0, x1 - x0), self.dtype)
        offset = (((b * channels + c) * h + y0) * w + x0) * isz
        self._copy(out, offset, w * isz, (x1 - x0) * isz, y1 - y0)
        return out

    def windows(self, boxes: Sequence[tuple[int, int, int, int, int, int]]) -> list[np.ndarray]:
        """Several windows ``(b, c, y0, y1, x0, x1)`` in one batch: async copies into pinned
        staging, one sync, then a host copy each. Why: a synchronous copy costs ~25 us of
        latency whatever its size (measured on an H100), so 30 boxes read one by one cost more
        than the whole 1408x992 map; batched they cost about one copy's latency."""
        _, channels, h, w = self.shape
        isz = self.dtype.itemsize
        copies, sizes = [], []
        for box in boxes:
            b, c, y0, y1, x0, x1 = box
            check_window(self.shape, b, c, y0, y1, x0, x1)
            offset = (((b * channels + c) * h + y0) * w + x0) * isz
            copies.append((offset, w * isz, (x1 - x0) * isz, y1 - y0))
            sizes.append((y1 - y0, x1 - x0))
        total = sum(width * height for _, _, width, height in copies)
        lease, pool = self._lease, self._lease.pool
        with pool.lock:
            self._check_live()
            base = lease.buf.ptr
            staged = pool.read_batch([(base + o, p, wd, ht) for o, p, wd, ht in copies], total)
            out, pos = [], 0
            for shape in sizes:
                n = shape[0] * shape[1] * isz
                out.append(staged[pos : pos + n].view(self.dtype).reshape(shape).copy())
                pos += n
        self._count(total)
        return out

    def masked_sums(self, windows: Sequence[MaskedWindow]) -> np.ndarray:
        """Box sums computed on the device, 8 bytes back each (see ``masked_sum.py``)."""
        return device_masked_sums(self, windows)

    def to_numpy(self) -> np.ndarray:
        """The whole map (counted as fetched): for a caller that needs it all."""
        n, c, h, w = self.shape
        out = np.empty(self.shape, self.dtype)
        row = w * self.dtype.itemsize  # rows of the whole map: no pitch near a device limit
        self._copy(out, 0, row, row, n * c * h)
        return out

    def release(self) -> None:
        """Give the buffer back to the executor (idempotent); reads then raise."""
        self._finalizer()

    def __enter__(self) -> DeviceResidentMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self.released else f"ptr={self.device_ptr:#x}"
        return f"DeviceResidentMap(shape={self.shape}, dtype={self.dtype}, {state})"

    def _copy(self, out: np.ndarray, offset: int, spitch: int, width: int, height: int) -> None:
        lease = self._lease
        pool = lease.pool
        # The pool lock keeps close() (which frees leased buffers) from running mid-copy.
        with pool.lock:
            self._check_live()
            if width and height:  # an empty map's buffer may be unallocated: nothing to copy
                self._copy_locked(out, lease.buf.ptr + offset, spitch, width, height)
        self._count(out.nbytes)

    def _check_live(self) -> None:
        if not self._lease.active:
            raise RuntimeError("resident map read after release()")
        if self._lease.pool.closed:
            raise RuntimeError("resident map read after its executor was closed")

    def _count(self, nbytes: int) -> None:
        with self._count_lock:
            self.fetched_bytes += nbytes
        if self.on_fetch is not None:
            self.on_fetch(nbytes)

    def _copy_locked(self, out: np.ndarray, src: int, spitch: int, width: int, height: int) -> None:
        rt = cudart()
        with device_scope(self.device_id):
            kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
            err = rt.cudaMemcpy2D(out.ctypes.data, width, src, spitch, width, height, kind)
            check(err, "cudaMemcpy2D D2H (resident window)")


def resident_indices(
    outputs: Sequence[int | str], names: Sequence[str] | None, count: int
) -> list[int]:
    """Output indices for ``resident_outputs`` (names need ``output_names``); no duplicates."""
    indices: list[int] = []
    for output in outputs:
        if isinstance(output, str):
            if names is None or output not in names:
                raise KeyError(f"no output named {output!r} (outputs: {names})")
            index = list(names).index(output)
        elif isinstance(output, int | np.integer) and not isinstance(output, bool):
            index = int(output)
            if not 0 <= index < count:
                raise IndexError(f"output index {index} out of range ({count} outputs)")
        else:
            raise TypeError(f"a resident output is an index or a name, not {output!r}")
        if index in indices:
            raise ValueError(f"output {output!r} named twice in resident_outputs")
        indices.append(index)
    return indices
