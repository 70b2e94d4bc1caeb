"""Engine outputs left where the engine wrote them; the host copies only the windows it reads.

Why: DB post-processing needs the det probability map only inside each candidate box (its
score is the map's mean over the box), while the contours come from the thresholded bitmap the
fused det graph returns packed (1 bit a pixel). Copying the whole float32 map (5.6 MB for a
1000x1400 page, 48 MB for 3000x4000) is what made det the biggest engine output; a resident map
is read window by window, exactly (the same float32 values), and counts what it copied.

Two kinds share :class:`ResidentMap`: :class:`HostResidentMap` (an engine whose output already
lives in host memory: ONNX Runtime on the CPU) and the CUDA executor's device-side one
(:mod:`paddleocr_trt.backend.cuda`), which copies each window with one 2-D ``cudaMemcpy``.
Both count ``fetched_bytes`` the same way, so a CPU run measures what a GPU would transfer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

OnFetch = Callable[[int], None]

#: bytes a masked sum returns to the host (one float64)
SUM_BYTES = 8


@dataclass(frozen=True)
class MaskedWindow:
    """One DB box score asked of the map: ``cv2.mean(map[b, c, y0:y0 + h, x0:x0 + w], mask)``.

    ``mask`` is the (h, w) uint8 mask PaddleX draws with ``cv2.fillPoly`` (nonzero = counted).
    The engine side returns the *sum* (see :func:`masked_sum_of`); the host divides.
    """

    b: int
    c: int
    y0: int
    x0: int
    mask: np.ndarray

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.mask))


def masked_sum_of(plane: np.ndarray, window: MaskedWindow) -> float:
    """The reference every engine side must equal bit for bit: the float64 sum, from +0.0, of
    the window's values under nonzero mask pixels, added one at a time in row-major order.

    That is exactly what ``cv2.mean(window, mask)`` accumulates for a float32 window, with or
    without IPP (checked on random windows, and on real maps against PaddleX's own
    ``box_score_fast``/``box_score_slow`` in tests/test_masked_sums.py); its mean is
    ``sum * (1.0 / count)`` (:func:`masked_mean`).
    """
    h, w = window.mask.shape
    values = plane[window.y0 : window.y0 + h, window.x0 : window.x0 + w][window.mask != 0]
    if values.size == 0:
        return 0.0
    # sequential, not pairwise; accumulate starts from values[0], not from +0.0 + values[0]:
    # "+ 0.0" turns an all -0.0 sum into cv2's +0.0 and changes no other value
    return float(np.add.accumulate(values.astype(np.float64))[-1] + 0.0)


def masked_mean(total: float, count: int) -> float:
    """``cv2.mean``'s last step: ``sum * (1. / count)`` (0 when nothing is masked)."""
    return float(total * (1.0 / count)) if count else 0.0


def check_masked_window(shape: tuple[int, ...], window: MaskedWindow) -> None:
    """Refuse a masked window outside the map or with a mask that is not 2-D uint8."""
    mask = window.mask
    if not (isinstance(mask, np.ndarray) and mask.ndim == 2 and mask.dtype == np.uint8):
        raise ValueError(f"a window mask is a 2-D uint8 array, got {getattr(mask, 'shape', mask)}")
    h, w = mask.shape
    check_window(shape, window.b, window.c, window.y0, window.y0 + h, window.x0, window.x0 + w)


def pack_masked_windows(windows: Sequence[MaskedWindow]) -> tuple[np.ndarray, np.ndarray]:
    """Masked windows as a device kernel reads them: ``meta`` (K, 7) int64 rows
    ``b, c, y0, x0, h, w, byte offset`` and ``bits``, every mask flattened row-major and packed
    8 pixels a byte, most significant bit first (``np.packbits``), each starting on a byte."""
    meta = np.zeros((len(windows), 7), np.int64)
    chunks, offset = [], 0
    for k, win in enumerate(windows):
        h, w = win.mask.shape
        packed = np.packbits(win.mask.reshape(-1) != 0)
        meta[k] = (win.b, win.c, win.y0, win.x0, h, w, offset)
        chunks.append(packed)
        offset += packed.size
    bits = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    return meta, bits


@runtime_checkable
class ResidentMap(Protocol):
    """A batch-major (N, C, H, W) engine output; ``window`` copies ``[b, c, y0:y1, x0:x1]``."""

    shape: tuple[int, ...]
    dtype: np.dtype
    #: bytes copied to the host so far (windows); the map itself counts 0
    fetched_bytes: int
    #: called with the bytes of each copy (the stage timers count them); may be None
    on_fetch: OnFetch | None

    def window(self, b: int, c: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray: ...

    def masked_sums(self, windows: Sequence[MaskedWindow]) -> np.ndarray:
        """(K,) float64, each equal to :func:`masked_sum_of` bit for bit, computed where the
        map lives; counts :data:`SUM_BYTES` per window as fetched."""
        ...

    def release(self) -> None: ...


def check_window(shape: tuple[int, ...], b: int, c: int, y0: int, y1: int, x0: int, x1: int):
    """Refuse a window outside the map (numpy would clip silently; a device copy would not)."""
    n, channels, h, w = shape
    if not (0 <= b < n and 0 <= c < channels and 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise ValueError(
            f"window [{b}, {c}, {y0}:{y1}, {x0}:{x1}] is outside the resident map of shape {shape}"
        )


class HostResidentMap:
    """:class:`ResidentMap` over a host array (an engine that computed in host memory)."""

    nbytes = 0  # what crossed the engine boundary when the output was returned

    def __init__(self, array: np.ndarray, on_fetch: OnFetch | None = None) -> None:
        if array.ndim != 4:
            raise ValueError(f"a resident map is (N, C, H, W), got shape {array.shape}")
        self._array: np.ndarray | None = array
        self.shape = tuple(int(d) for d in array.shape)
        self.dtype = array.dtype
        self.fetched_bytes = 0
        self.on_fetch = on_fetch
        self._lock = threading.Lock()

    def window(self, b: int, c: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        check_window(self.shape, b, c, y0, y1, x0, x1)
        array = self._array
        if array is None:
            raise RuntimeError("resident map read after release()")
        out = np.array(array[b, c, y0:y1, x0:x1])
        with self._lock:
            self.fetched_bytes += out.nbytes
        if self.on_fetch is not None:
            self.on_fetch(out.nbytes)
        return out

    def masked_sums(self, windows: Sequence[MaskedWindow]) -> np.ndarray:
        """Summed on the host from the array: counts the values read (the host, not an engine,
        does the reduction here)."""
        array = self._array
        if array is None:
            raise RuntimeError("resident map read after release()")
        out = np.zeros(len(windows), np.float64)
        read = 0
        for k, win in enumerate(windows):
            check_masked_window(self.shape, win)
            out[k] = masked_sum_of(array[win.b, win.c], win)
            read += win.count * self.dtype.itemsize
        with self._lock:
            self.fetched_bytes += read
        if self.on_fetch is not None:
            self.on_fetch(read)
        return out

    def release(self) -> None:
        self._array = None

    def to_numpy(self) -> np.ndarray:
        """The whole map (counted as fetched): for a caller that needs it all."""
        array = self._array
        if array is None:
            raise RuntimeError("resident map read after release()")
        n, c, h, w = self.shape
        out = np.empty(self.shape, self.dtype)
        for b in range(n):
            for ch in range(c):
                out[b, ch] = self.window(b, ch, 0, h, 0, w)
        return out


class ImageWindows:
    """One image's 2-D plane of a resident map, sliceable like the numpy array PaddleX's
    ``DBPostProcess.box_score_fast/slow`` index (``pred[ymin:ymax + 1, xmin:xmax + 1]``): each
    slice is one exact window copy. ``shape`` is (H, W) as they read it."""

    def __init__(self, resident: Any, b: int, c: int = 0) -> None:
        self.resident = resident
        self.b, self.c = b, c
        self.shape = tuple(resident.shape[2:])
        self.dtype = resident.dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        if not (
            isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, slice) for k in key)
        ):
            raise TypeError(f"a resident map image is read by [y0:y1, x0:x1] windows, not {key!r}")
        (y0, y1, ys), (x0, x1, xs) = (k.indices(n) for k, n in zip(key, self.shape, strict=True))
        if ys != 1 or xs != 1:
            raise TypeError("a resident map image is read with step-1 slices only")
        return self.resident.window(self.b, self.c, y0, y1, x0, x1)


class ResidentSlice:
    """Rows ``start:start + count`` of a resident map (one image of a stacked det call): the
    owner keeps the map alive; this view never releases it."""

    def __init__(self, resident: Any, start: int, count: int) -> None:
        n = resident.shape[0]
        if not (start >= 0 and count >= 1 and start + count <= n):
            raise ValueError(f"rows {start}:{start + count} outside a batch of {n}")
        self.resident = resident
        self.start = start
        self.shape = (count, *resident.shape[1:])
        self.dtype = resident.dtype
        self.nbytes = 0

    @property
    def fetched_bytes(self) -> int:
        return int(self.resident.fetched_bytes)

    def window(self, b: int, c: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        check_window(self.shape, b, c, y0, y1, x0, x1)
        return self.resident.window(self.start + b, c, y0, y1, x0, x1)

    def masked_sums(self, windows: Sequence[MaskedWindow]) -> np.ndarray:
        for win in windows:
            check_masked_window(self.shape, win)
        shifted = [replace(w, b=self.start + w.b) for w in windows]
        return self.resident.masked_sums(shifted)

    def release(self) -> None:
        """Nothing: the map belongs to the whole call."""


def take_rows(output: Any, start: int, count: int) -> Any:
    """Rows of one engine output, whether an array or a resident map."""
    if isinstance(output, np.ndarray):
        return output[start : start + count]
    return ResidentSlice(output, start, count)
