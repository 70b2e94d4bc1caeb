"""CUDA-graph capture and replay, and a cache of instantiated graphs per key.

Replaying a captured graph replaces many launches (copies, every kernel of an engine) by one,
which removes most of the per-call host overhead for small inputs. A graph bakes in every
address it touched, so it is only valid while those buffers live at the same addresses: the
cache key must contain them and the owner clears the cache when a buffer is reallocated. A graph
also bakes in the shapes it was captured with, but an engine may read shape-dependent state from
the host at replay (TensorRT's execution context does), so the owner must re-set the enqueuer's
input shapes before replaying a graph of other shapes than the last ones set.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from ...log import get_logger
from .runtime import check, cudart
from .stream import Stream

logger = get_logger("cuda.graph")


def _destroy_exec(exec_handle: Any) -> None:
    try:
        check(cudart().cudaGraphExecDestroy(exec_handle), "cudaGraphExecDestroy")
    except Exception as exc:
        logger.debug("cudaGraphExecDestroy failed: %s", exc)


class CudaGraph:
    """An instantiated (executable) graph."""

    def __init__(self, exec_handle: Any) -> None:
        self._exec = exec_handle
        self._finalizer = weakref.finalize(self, _destroy_exec, exec_handle)

    def launch(self, stream: Stream) -> None:
        check(cudart().cudaGraphLaunch(self._exec, stream.raw), "cudaGraphLaunch")

    def destroy(self) -> None:
        self._finalizer()


def capture(stream: Stream, work: Callable[[], None]) -> CudaGraph:
    """Record what ``work`` issues on ``stream`` (nothing executes) and instantiate it.

    Raises whatever ``work`` raised, or CudaError when the capture was invalidated (e.g. the
    work synchronised or used another stream); the stream is out of capture mode either way.
    """
    rt = cudart()
    mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    check(rt.cudaStreamBeginCapture(stream.raw, mode), "cudaStreamBeginCapture")
    try:
        work()
    except BaseException:
        err, graph = rt.cudaStreamEndCapture(stream.raw)
        if err == rt.cudaError_t.cudaSuccess and graph is not None and int(graph):
            rt.cudaGraphDestroy(graph)
        rt.cudaGetLastError()
        raise
    graph = check(rt.cudaStreamEndCapture(stream.raw), "cudaStreamEndCapture")
    try:
        exec_handle = check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
    finally:
        check(rt.cudaGraphDestroy(graph), "cudaGraphDestroy")
    return CudaGraph(exec_handle)


class GraphCache:
    """Instantiated graphs by key (input shapes + every buffer address), least recently used out.

    Every graph holds device memory for its nodes, and shape sets (rec widths, det page sizes)
    can be many, so the cache is bounded: beyond ``max_size`` the least recently replayed graph
    is destroyed. Values are anything with ``destroy()`` (a :class:`CudaGraph` and its metadata).
    """

    def __init__(self, max_size: int = 16) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        self.max_size = max_size
        self.evictions = 0
        self._graphs: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any | None:
        """The graph for ``key`` (now the most recently used), or None."""
        graph = self._graphs.get(key)
        if graph is not None:
            self._graphs.move_to_end(key)
        return graph

    def put(self, key: Hashable, graph: Any) -> None:
        old = self._graphs.pop(key, None)
        if old is not None:
            old.destroy()
        self._graphs[key] = graph
        while len(self._graphs) > self.max_size:
            _, evicted = self._graphs.popitem(last=False)
            evicted.destroy()
            self.evictions += 1

    def clear(self) -> int:
        """Destroy every graph; returns how many there were."""
        n = len(self._graphs)
        for graph in self._graphs.values():
            graph.destroy()
        self._graphs.clear()
        return n

    def keys(self) -> list[Hashable]:
        """Keys from least to most recently used."""
        return list(self._graphs)

    def __len__(self) -> int:
        return len(self._graphs)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._graphs
