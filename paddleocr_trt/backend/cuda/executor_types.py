"""What :class:`~.executor.CudaExecutor` runs and reports: the :class:`Enqueuer` contract a
compute backend implements (TensorRT's execution context, a device copy), the counters it
keeps, and its graph-cache entry. Apart from the executor so that an enqueuer needs none of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from .graph import CudaGraph

Shape = tuple[int, ...]


@runtime_checkable
class Enqueuer(Protocol):
    """What a compute backend must provide (TensorRT's execution context, a D2D copy, ...)."""

    def set_input_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        """Declare input shapes for the next call; return the output shapes.

        Also the re-set hook: the executor calls it before replaying a CUDA graph whose shapes
        differ from the last ones set, so host-side shape state matches the graph.
        """

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
    graph_evictions: int = 0
    #: input shapes re-set on the enqueuer before a replay (the last ones set were others)
    shape_resets: int = 0
    buffer_reallocations: int = 0
    #: resident outputs returned as device maps (their bytes were not copied to the host)
    resident_outputs: int = 0
    #: inputs copied into pinned memory (staged) vs. used in place (zero-copy views)
    staged_inputs: int = 0
    zero_copy_inputs: int = 0
    last_host_s: float = 0.0
    total_host_s: float = 0.0
    last_sync_wait_s: float = 0.0
    total_sync_wait_s: float = 0.0

    @property
    def mean_host_s(self) -> float:
        return self.total_host_s / self.calls if self.calls else 0.0


@dataclass
class GraphEntry:
    graph: CudaGraph
    out_shapes: list[Shape]

    def destroy(self) -> None:
        self.graph.destroy()


def nbytes_of(shape: Shape, dtype: np.dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
