"""A generic GPU executor: numpy in, numpy out, around any backend that enqueues work on a stream.

TensorRT's execution context is one such *enqueuer*; a device-to-device copy is another (see
``enqueuers.py``), which lets the memory/stream/graph machinery be tested and measured without
TensorRT. Per call: inputs in pinned memory, async H2D, enqueue, async D2H, one sync.

Two ways to pass data. Staged: ``run(arrays)`` copies each array into pinned memory and returns
fresh output arrays (a host memcpy each way, ~10 GB/s on one core). Zero-copy: the producer
writes into ``input_view(i, shape)`` (a numpy array over the pinned input buffer), passes that
view to ``run(..., copy_outputs=False)`` and reads the returned views over the pinned output
buffers; no host copy is made, so the transfers run at the copy engines' speed.

Resident outputs (``resident_outputs``) are not copied back at all: ``run`` returns a
:class:`~.resident.DeviceResidentMap` over a device buffer leased from a per-output pool, and
the host copies only the windows it reads (the det probability map; see ``resident.py``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ...errors import OutOfMemoryError
from ...log import get_logger, warn_once
from .executor_types import Enqueuer, ExecutorStats, GraphEntry, Shape, nbytes_of
from .graph import GraphCache, capture
from .memory import DeviceBuffer, PinnedBuffer
from .resident import DeviceResidentMap, OnFetch, ResidentOutputs, ResidentPool
from .runtime import CudaError, device_scope
from .stream import Stream

logger = get_logger("cuda.executor")

#: How many graphs an executor keeps by default (one per input-shape set).
DEFAULT_GRAPH_CACHE_SIZE = 16


class CudaExecutor:
    """Runs an :class:`Enqueuer` on its own device and stream with reusable buffers.

    With ``use_cuda_graphs`` the first call of an input-shape set runs eagerly, the second runs
    eagerly and then captures copies + enqueue into a CUDA graph (right after an eager enqueue of
    the same shapes, as TensorRT requires), later ones replay it. Graphs are kept per (input
    shapes, buffer addresses) in an LRU cache of ``graph_cache_size``; before a replay whose
    shapes differ from the enqueuer's current ones, ``set_input_shapes`` is called again. Graph
    replay assumes output shapes depend only on input shapes (true for TensorRT engines without
    data-dependent shapes). Not re-entrant: calls are serialised by a lock.

    ``resident_outputs`` (indices, or names with ``output_names``) stay on the device: each
    call binds a buffer leased from that output's pool and returns a DeviceResidentMap holding
    it until ``release()``; a graph is kept per leased address like any other buffer address.
    ``on_fetch`` is passed to every map (called with the bytes of each window read).
    """

    def __init__(
        self,
        enqueuer: Enqueuer,
        *,
        input_dtypes: Sequence[np.dtype | type],
        output_dtypes: Sequence[np.dtype | type],
        device_id: int = 0,
        use_cuda_graphs: bool = False,
        graph_cache_size: int = DEFAULT_GRAPH_CACHE_SIZE,
        input_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
        resident_outputs: Sequence[int | str] = (),
        on_fetch: OnFetch | None = None,
    ) -> None:
        self._enqueuer = enqueuer
        self._in_dtypes = [np.dtype(d) for d in input_dtypes]
        self._out_dtypes = [np.dtype(d) for d in output_dtypes]
        if input_names is not None and len(input_names) != len(self._in_dtypes):
            raise ValueError(f"{len(input_names)} input names for {len(self._in_dtypes)} inputs")
        self._in_names = list(input_names) if input_names is not None else None
        if output_names is not None and len(output_names) != len(self._out_dtypes):
            raise ValueError(
                f"{len(output_names)} output names for {len(self._out_dtypes)} outputs"
            )
        self._out_names = list(output_names) if output_names is not None else None
        # resolved (and refused) before anything touches the GPU; pools allocate lazily
        self._res = ResidentOutputs(
            device_id, resident_outputs, self._out_names, len(self._out_dtypes)
        )
        self.on_fetch = on_fetch
        self.device_id = device_id
        self.use_cuda_graphs = use_cuda_graphs
        self._graphs = GraphCache(graph_cache_size)  # validates the size before any allocation
        self._lock = threading.Lock()
        self._closed = False
        self._stats = ExecutorStats()
        with device_scope(device_id):
            self._stream = Stream(device_id)
        self._dev_in = [DeviceBuffer(device_id) for _ in self._in_dtypes]
        self._dev_out = [DeviceBuffer(device_id) for _ in self._out_dtypes]
        self._host_in = [PinnedBuffer() for _ in self._in_dtypes]
        self._host_out = [PinnedBuffer() for _ in self._out_dtypes]
        #: Input-shape sets run eagerly once (capture on the second sighting); bounded like graphs.
        self._seen: OrderedDict[tuple[Shape, ...], None] = OrderedDict()
        #: The shapes last passed to the enqueuer's set_input_shapes, and what it returned.
        self._declared: tuple[Shape, ...] | None = None
        self._declared_out: list[Shape] = []

    # -- public ----------------------------------------------------------------------------

    @property
    def stream_handle(self) -> int:
        return self._stream.handle

    @property
    def stats(self) -> ExecutorStats:
        return replace(self._stats, graph_evictions=self._graphs.evictions)

    @property
    def cached_graphs(self) -> int:
        return len(self._graphs)

    @property
    def resident_outputs(self) -> tuple[int, ...]:
        """Indices of the outputs returned as device-resident maps."""
        return tuple(self._res.pools)

    def resident_pool(self, output: int | str) -> ResidentPool:
        """The buffer pool of a resident output (for inspection: sizes, leases)."""
        return self._res.pool(output)

    def input_view(
        self, input: int | str, shape: Sequence[int], dtype: np.dtype | type | None = None
    ) -> np.ndarray:
        """A writable numpy array over this input's pinned buffer, for the producer to fill.

        Pass it (unchanged) to :meth:`run` and it is transferred without a host copy. It is
        the buffer for the next call only: fill it after the previous call returned, and ask
        again after asking for a larger shape (the buffer may then move; an old view stays
        valid memory but is simply copied like any other array). ``dtype`` must be the
        engine's (e.g. uint8 for engine-side preprocessing); default: that dtype.
        """
        index = self._input_index(input)
        dt = self._in_dtypes[index]
        if dtype is not None and np.dtype(dtype) != dt:
            raise TypeError(f"input {input!r} is {dt}, not {np.dtype(dtype)}")
        shape_t = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape_t):
            raise ValueError(f"negative dimension in shape {shape_t} for input {input!r}")
        with self._lock:
            if self._closed:
                raise CudaError("CudaExecutor.input_view() after close()")
            if self._host_in[index].ensure(nbytes_of(shape_t, dt)):
                self._stats.buffer_reallocations += 1
                self._invalidate_graphs()
            return self._host_in[index].view(shape_t, dt)

    def run(
        self, inputs: Sequence[np.ndarray], *, copy_outputs: bool = True
    ) -> list[np.ndarray | DeviceResidentMap]:
        """Inputs in model order -> one array (or resident map) per output.

        Inputs obtained from :meth:`input_view` are used in place; any other array is copied
        into pinned memory (converted to the input dtype). With ``copy_outputs`` (default) the
        outputs are fresh arrays, safe to keep. With ``copy_outputs=False`` they are read-only
        views over the pinned output buffers: no copy, but their contents are only valid until
        the next call on this executor (copy what must outlive it). A resident output is a
        DeviceResidentMap either way; ``release()`` it once read.
        """
        t0 = time.perf_counter()
        with self._lock:
            if self._closed:
                raise CudaError("CudaExecutor.run() after close()")
            if len(inputs) != len(self._in_dtypes):
                raise ValueError(f"expected {len(self._in_dtypes)} inputs, got {len(inputs)}")
            shapes = tuple(tuple(int(d) for d in a.shape) for a in inputs)
            with device_scope(self.device_id):
                outputs, wait = self._run_locked(inputs, shapes, copy_outputs)
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
            self._res.close(self._dev_out)  # leased buffers too: their maps raise on read
            for buf in (*self._dev_in, *self._dev_out, *self._host_in, *self._host_out):
                buf.free()
            self._stream.close()

    def __enter__(self) -> CudaExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _input_index(self, input: int | str) -> int:
        if isinstance(input, str):
            if self._in_names is None or input not in self._in_names:
                raise KeyError(f"no input named {input!r} (inputs: {self._in_names})")
            return self._in_names.index(input)
        if not 0 <= input < len(self._in_dtypes):
            raise IndexError(f"input index {input} out of range ({len(self._in_dtypes)} inputs)")
        return input

    def _declare(self, shapes: tuple[Shape, ...]) -> list[Shape]:
        """Set the enqueuer's input shapes (skipped when they are already these)."""
        if self._declared == shapes:
            return self._declared_out
        self._declared = None  # unknown until set_input_shapes succeeds
        out_shapes = [tuple(int(d) for d in s) for s in self._enqueuer.set_input_shapes(shapes)]
        if len(out_shapes) != len(self._out_dtypes):
            raise CudaError(
                f"enqueuer returned {len(out_shapes)} output shapes, "
                f"expected {len(self._out_dtypes)}"
            )
        for s in out_shapes:
            if any(d < 0 for d in s):
                raise CudaError(f"unresolved output shape {s} for input shapes {shapes}")
        self._declared, self._declared_out = shapes, out_shapes
        return out_shapes

    def _invalidate_graphs(self) -> None:
        if self._graphs.clear():
            self._stats.graph_invalidations += 1

    def _reserve(self, shapes: tuple[Shape, ...], out_shapes: Sequence[Shape]) -> None:
        """Grow buffers to fit; any reallocation invalidates graphs (they hold old addresses)."""
        grew = False
        try:
            for shape, dt, dev, host in zip(
                shapes, self._in_dtypes, self._dev_in, self._host_in, strict=True
            ):
                n = nbytes_of(shape, dt)
                grew |= dev.ensure(n)
                grew |= host.ensure(n)
            for i, (shape, dt, dev, host) in enumerate(
                zip(out_shapes, self._out_dtypes, self._dev_out, self._host_out, strict=True)
            ):
                n = nbytes_of(shape, dt)
                grew |= dev.ensure(n)  # a resident output's dev buffer is this call's lease
                if i not in self._res:
                    grew |= host.ensure(n)
        except OutOfMemoryError:
            self._invalidate_graphs()  # a failed ensure() has already released its old memory
            raise
        finally:
            if grew:
                self._stats.buffer_reallocations += 1
        if grew:
            self._invalidate_graphs()

    def _stage(self, inputs: Sequence[np.ndarray], shapes: tuple[Shape, ...]) -> None:
        """Copy into pinned memory every input that is not already this executor's view."""
        for a, shape, dt, host in zip(inputs, shapes, self._in_dtypes, self._host_in, strict=True):
            if host.holds(a, shape, dt):
                self._stats.zero_copy_inputs += 1
                continue
            np.copyto(host.view(shape, dt), a, casting="same_kind")
            self._stats.staged_inputs += 1

    def _bind(self) -> None:
        self._enqueuer.bind([b.ptr for b in self._dev_in], [b.ptr for b in self._dev_out])

    def _issue(self, in_bytes: Sequence[int], out_bytes: Sequence[int]) -> None:
        stream = self._stream
        for dev, host, n in zip(self._dev_in, self._host_in, in_bytes, strict=True):
            stream.copy_h2d(dev.ptr, host.ptr, n)
        self._enqueuer.enqueue(stream.handle)
        for i, (dev, host, n) in enumerate(
            zip(self._dev_out, self._host_out, out_bytes, strict=True)
        ):
            if i not in self._res:
                stream.copy_d2h(host.ptr, dev.ptr, n)

    def _key(self, shapes: tuple[Shape, ...]) -> tuple:
        ptrs = tuple(
            b.ptr for b in (*self._dev_in, *self._dev_out, *self._host_in, *self._host_out)
        )
        return (shapes, ptrs)

    def _capture(self, shapes: tuple[Shape, ...], out_shapes: list[Shape], in_b, out_b) -> None:
        """Record (nothing runs) the call just run eagerly with the same shapes and bindings."""
        try:
            graph = capture(self._stream, lambda: self._issue(in_b, out_b))
        except Exception as exc:
            self.use_cuda_graphs = False
            self._invalidate_graphs()
            warn_once(
                ("cuda-graph-capture", type(self._enqueuer).__name__, str(exc)),
                "CUDA graph capture failed for %s (%s); running without CUDA graphs",
                type(self._enqueuer).__name__,
                exc,
            )
            return
        self._graphs.put(self._key(shapes), GraphEntry(graph, list(out_shapes)))
        self._stats.graph_captures += 1

    def _run_locked(
        self, inputs: Sequence[np.ndarray], shapes: tuple[Shape, ...], copy_outputs: bool
    ) -> tuple[list[np.ndarray | DeviceResidentMap], float]:
        leased = self._res.bind(self._dev_out)  # before the graph key: it holds their addresses
        try:
            outputs, wait = self._run_leased(inputs, shapes, copy_outputs)
        except BaseException:
            self._res.unbind(self._dev_out, leased, give_back=True)
            raise
        self._res.unbind(self._dev_out, leased, give_back=False)
        for index, buf in leased.items():
            outputs[index] = DeviceResidentMap(
                self._res.pools[index], buf, outputs[index], self._out_dtypes[index], self.on_fetch
            )
        self._stats.resident_outputs += len(leased)
        return outputs, wait

    def _run_leased(
        self, inputs: Sequence[np.ndarray], shapes: tuple[Shape, ...], copy_outputs: bool
    ) -> tuple[list, float]:
        """One call with the leases bound; a resident output's slot holds its shape."""
        entry = self._graphs.get(self._key(shapes)) if self.use_cuda_graphs else None
        if entry is not None and not self._res.fit(
            self._dev_out, entry.out_shapes, self._out_dtypes
        ):
            entry = None
        if entry is not None:
            out_shapes = entry.out_shapes
        else:
            out_shapes = self._declare(shapes)
            self._res.check_shapes(out_shapes)
            self._reserve(shapes, out_shapes)
        self._stage(inputs, shapes)
        in_bytes = [nbytes_of(s, dt) for s, dt in zip(shapes, self._in_dtypes, strict=True)]
        out_bytes = [nbytes_of(s, dt) for s, dt in zip(out_shapes, self._out_dtypes, strict=True)]

        if entry is not None:
            if self._declared != shapes:  # the hook: host-side shape state must match the graph
                self._declare(shapes)
                self._stats.shape_resets += 1
            entry.graph.launch(self._stream)
            self._stats.graph_launches += 1
        else:
            self._bind()
            self._issue(in_bytes, out_bytes)
            self._stats.eager_calls += 1

        t_sync = time.perf_counter()
        self._stream.synchronize()
        wait = time.perf_counter() - t_sync

        if entry is None and self.use_cuda_graphs:
            if shapes in self._seen:
                self._capture(shapes, out_shapes, in_bytes, out_bytes)
            else:
                self._seen[shapes] = None
                while len(self._seen) > 4 * self._graphs.max_size:
                    self._seen.popitem(last=False)
        outputs: list = []
        for i, (s, dt, host) in enumerate(
            zip(out_shapes, self._out_dtypes, self._host_out, strict=True)
        ):
            if i in self._res:
                outputs.append(s)  # becomes a DeviceResidentMap in _run_locked
            elif copy_outputs:
                outputs.append(np.array(host.view(s, dt)))
            else:
                view = host.view(s, dt)
                view.flags.writeable = False
                outputs.append(view)
        return outputs, wait
