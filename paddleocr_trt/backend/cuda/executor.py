"""A generic GPU executor: numpy in, numpy out, around any backend that enqueues work on a stream.

TensorRT's execution context is one such *enqueuer*; a device-to-device copy is another (see
``enqueuers.py``), which lets the memory/stream/graph machinery be tested and measured without
TensorRT. Per call: stage inputs in pinned memory, async H2D, enqueue, async D2H, one sync.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np

from ...errors import OutOfMemoryError
from ...log import get_logger, warn_once
from .graph import GraphCache, capture
from .memory import DeviceBuffer, PinnedBuffer
from .runtime import CudaError, device_scope
from .stream import Stream

logger = get_logger("cuda.executor")

Shape = tuple[int, ...]


@runtime_checkable
class Enqueuer(Protocol):
    """What a compute backend must provide (TensorRT's execution context, a D2D copy, ...)."""

    def set_input_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        """Declare input shapes for the next call; return the output shapes."""

    def bind(self, input_ptrs: Sequence[int], output_ptrs: Sequence[int]) -> None:
        """Device addresses for the next enqueue."""

    def enqueue(self, stream_handle: int) -> None:
        """Launch the work asynchronously on the stream. Raise on failure."""


@dataclass
class ExecutorStats:
    """Counters and host-side timings; host time excludes the wait for the GPU in the sync."""

    calls: int = 0
    eager_calls: int = 0
    graph_captures: int = 0
    graph_launches: int = 0
    graph_invalidations: int = 0
    buffer_reallocations: int = 0
    last_host_s: float = 0.0
    total_host_s: float = 0.0
    last_sync_wait_s: float = 0.0
    total_sync_wait_s: float = 0.0

    @property
    def mean_host_s(self) -> float:
        return self.total_host_s / self.calls if self.calls else 0.0


def _nbytes(shape: Shape, dtype: np.dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


class CudaExecutor:
    """Runs an :class:`Enqueuer` on its own device and stream with reusable buffers.

    With ``use_cuda_graphs`` the first call of an input-shape set runs eagerly (warm-up), the
    next one captures copies + enqueue into a CUDA graph, later ones replay it. Graph replay
    assumes output shapes depend only on input shapes (true for TensorRT engines without
    data-dependent shapes). Not re-entrant: calls are serialised by a lock.
    """

    def __init__(
        self,
        enqueuer: Enqueuer,
        *,
        input_dtypes: Sequence[np.dtype | type],
        output_dtypes: Sequence[np.dtype | type],
        device_id: int = 0,
        use_cuda_graphs: bool = False,
    ) -> None:
        self._enqueuer = enqueuer
        self._in_dtypes = [np.dtype(d) for d in input_dtypes]
        self._out_dtypes = [np.dtype(d) for d in output_dtypes]
        self.device_id = device_id
        self.use_cuda_graphs = use_cuda_graphs
        self._lock = threading.Lock()
        self._closed = False
        self._stats = ExecutorStats()
        with device_scope(device_id):
            self._stream = Stream(device_id)
        self._dev_in = [DeviceBuffer(device_id) for _ in self._in_dtypes]
        self._dev_out = [DeviceBuffer(device_id) for _ in self._out_dtypes]
        self._host_in = [PinnedBuffer() for _ in self._in_dtypes]
        self._host_out = [PinnedBuffer() for _ in self._out_dtypes]
        self._graphs = GraphCache()
        #: Output shapes of input-shape sets already run once (warmed up); graph mode only.
        self._warm: dict[tuple[Shape, ...], list[Shape]] = {}

    # -- public ----------------------------------------------------------------------------

    @property
    def stream_handle(self) -> int:
        return self._stream.handle

    @property
    def stats(self) -> ExecutorStats:
        return replace(self._stats)

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Inputs in model order -> fresh output arrays (copies, safe to keep)."""
        t0 = time.perf_counter()
        with self._lock:
            if self._closed:
                raise CudaError("CudaExecutor.run() after close()")
            if len(inputs) != len(self._in_dtypes):
                raise ValueError(f"expected {len(self._in_dtypes)} inputs, got {len(inputs)}")
            shapes = tuple(tuple(int(d) for d in a.shape) for a in inputs)
            with device_scope(self.device_id):
                outputs, wait = self._run_locked(inputs, shapes)
            stats = self._stats
            stats.calls += 1
            stats.last_sync_wait_s = wait
            stats.total_sync_wait_s += wait
            stats.last_host_s = time.perf_counter() - t0 - wait
            stats.total_host_s += stats.last_host_s
        return outputs

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                with device_scope(self.device_id):
                    self._stream.synchronize()
            except Exception as exc:
                logger.debug("sync on close failed: %s", exc)
            self._graphs.clear()
            for buf in (*self._dev_in, *self._dev_out, *self._host_in, *self._host_out):
                buf.free()
            self._stream.close()

    def __enter__(self) -> CudaExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _declare(self, shapes: tuple[Shape, ...]) -> list[Shape]:
        out_shapes = [tuple(int(d) for d in s) for s in self._enqueuer.set_input_shapes(shapes)]
        if len(out_shapes) != len(self._out_dtypes):
            raise CudaError(
                f"enqueuer returned {len(out_shapes)} output shapes, "
                f"expected {len(self._out_dtypes)}"
            )
        for s in out_shapes:
            if any(d < 0 for d in s):
                raise CudaError(f"unresolved output shape {s} for input shapes {shapes}")
        return out_shapes

    def _invalidate_graphs(self) -> None:
        if self._graphs.clear():
            self._stats.graph_invalidations += 1
        self._warm.clear()

    def _reserve(self, shapes: tuple[Shape, ...], out_shapes: Sequence[Shape]) -> None:
        """Grow buffers to fit; any reallocation invalidates graphs (they hold old addresses)."""
        grew = False
        try:
            for shape, dt, dev, host in zip(
                shapes, self._in_dtypes, self._dev_in, self._host_in, strict=True
            ):
                n = _nbytes(shape, dt)
                grew |= dev.ensure(n)
                grew |= host.ensure(n)
            for shape, dt, dev, host in zip(
                out_shapes, self._out_dtypes, self._dev_out, self._host_out, strict=True
            ):
                n = _nbytes(shape, dt)
                grew |= dev.ensure(n)
                grew |= host.ensure(n)
        except OutOfMemoryError:
            self._invalidate_graphs()  # a failed ensure() has already released its old memory
            raise
        finally:
            if grew:
                self._stats.buffer_reallocations += 1
        if grew:
            self._invalidate_graphs()

    def _bind(self) -> None:
        self._enqueuer.bind([b.ptr for b in self._dev_in], [b.ptr for b in self._dev_out])

    def _issue(self, in_bytes: Sequence[int], out_bytes: Sequence[int]) -> None:
        stream = self._stream
        for dev, host, n in zip(self._dev_in, self._host_in, in_bytes, strict=True):
            stream.copy_h2d(dev.ptr, host.ptr, n)
        self._enqueuer.enqueue(stream.handle)
        for dev, host, n in zip(self._dev_out, self._host_out, out_bytes, strict=True):
            stream.copy_d2h(host.ptr, dev.ptr, n)

    def _ptr_key(self) -> tuple[int, ...]:
        return tuple(
            b.ptr for b in (*self._dev_in, *self._dev_out, *self._host_in, *self._host_out)
        )

    def _run_locked(
        self, inputs: Sequence[np.ndarray], shapes: tuple[Shape, ...]
    ) -> tuple[list[np.ndarray], float]:
        graphs = self.use_cuda_graphs
        out_shapes = self._warm.get(shapes) if graphs else None
        warmed = out_shapes is not None
        if out_shapes is None:
            out_shapes = self._declare(shapes)
        self._reserve(shapes, out_shapes)

        for a, shape, dt, host in zip(inputs, shapes, self._in_dtypes, self._host_in, strict=True):
            np.copyto(host.view(shape, dt), a, casting="same_kind")
        in_bytes = [_nbytes(s, dt) for s, dt in zip(shapes, self._in_dtypes, strict=True)]
        out_bytes = [_nbytes(s, dt) for s, dt in zip(out_shapes, self._out_dtypes, strict=True)]

        launched = False
        if warmed:
            key = (shapes, self._ptr_key())
            graph = self._graphs.get(key)
            if graph is None:
                # Bring the enqueuer's state to this shape set, then record instead of running.
                self._declare(shapes)
                self._bind()
                try:
                    graph = capture(self._stream, lambda: self._issue(in_bytes, out_bytes))
                except Exception as exc:
                    self.use_cuda_graphs = False
                    self._invalidate_graphs()
                    warn_once(
                        ("cuda-graph-capture", type(self._enqueuer).__name__, str(exc)),
                        "CUDA graph capture failed for %s (%s); running without CUDA graphs",
                        type(self._enqueuer).__name__,
                        exc,
                    )
                else:
                    self._graphs.put(key, graph)
                    self._stats.graph_captures += 1
            if graph is not None:
                graph.launch(self._stream)
                self._stats.graph_launches += 1
                launched = True
        if not launched:
            self._bind()
            self._issue(in_bytes, out_bytes)
            self._stats.eager_calls += 1
            if self.use_cuda_graphs:
                self._warm[shapes] = out_shapes

        t_sync = time.perf_counter()
        self._stream.synchronize()
        wait = time.perf_counter() - t_sync
        outputs = [
            np.array(host.view(s, dt))
            for s, dt, host in zip(out_shapes, self._out_dtypes, self._host_out, strict=True)
        ]
        return outputs, wait
