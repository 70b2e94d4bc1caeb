"""Reference enqueuers with no model behind them, to test and measure the executor alone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .runtime import check, cudart

Shape = tuple[int, ...]


class DeviceCopyEnqueuer:
    """Identity "model": output i is input i, copied device-to-device on the given stream.

    Its compute is a copy, so with tiny tensors a call measures the executor's host overhead.
    """

    def __init__(self, dtypes: Sequence[np.dtype | type]) -> None:
        self._dtypes = [np.dtype(d) for d in dtypes]
        self._nbytes: list[int] = []
        self._in: list[int] = []
        self._out: list[int] = []

    def set_input_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        if len(shapes) != len(self._dtypes):
            raise ValueError(f"expected {len(self._dtypes)} shapes, got {len(shapes)}")
        self._nbytes = [
            int(np.prod(s, dtype=np.int64)) * dt.itemsize
            for s, dt in zip(shapes, self._dtypes, strict=True)
        ]
        return [tuple(s) for s in shapes]

    def bind(self, input_ptrs: Sequence[int], output_ptrs: Sequence[int]) -> None:
        self._in = list(input_ptrs)
        self._out = list(output_ptrs)

    def enqueue(self, stream_handle: int) -> None:
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        for dst, src, n in zip(self._out, self._in, self._nbytes, strict=True):
            if n:
                check(rt.cudaMemcpyAsync(dst, src, n, kind, stream_handle), "cudaMemcpyAsync D2D")
