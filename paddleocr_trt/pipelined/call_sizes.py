"""How many inputs one engine call takes, per kind of device: on a GPU bigger calls pay, on a
CPU they cost.

Measured on the 2-core CPU machine (AMD EPYC, AVX2; ONNX Runtime 1.32, 2 intra-op threads,
PP-OCRv4 mobile rec, ms per row, best of 3; ``benchmarks/bench_call_sizes.py``): the time per
row grows once rows x padded width passes ~1,500 columns of 48 px, when a call's activations
no longer fit the caches -- W=320: 21.6 (1 row) 16.2 (4) 17.2 (6) 25.8 (24); W=560: 32.6 (1)
27.3 (2) 41.1 (6); W=1280: 67.3 (1) 86.7 (6); W=1920: 100.1 (1) 130.4 (6). PaddleOCR's own
chunks of 6 crops are therefore cut into calls of at most ``rec_columns // width`` rows on a CPU
(each row's numbers do not depend on its neighbours in the call: NOTES.md section 7), and
same-size det pages are not stacked (1376x992: 269 ms one page a call, 292 ms a page two a
call). A GPU keeps the merged calls (more rows a launch, fewer launches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CallSizes:
    """Caps of one engine call. ``rec_columns``: rows x padded width a CPU rec call may hold
    (None: never cut one of PaddleOCR's chunks, only merge equal-width chunks up to
    ``rec_rows``)."""

    det_images: int
    rec_rows: int
    rec_columns: int | None
    #: det inputs of at least this many values (H x W x C) run alone on every lane
    wide_det_values: int = 1 << 62


#: det inputs from ~4 megapixels (H x W x 3 values) run alone on every lane: a 4000x3008 det
#: call took 3.3-9 s on one thread beside another (1.5-4.9 s of it system time: page faults as
#: the lane session's arena grew by a second copy) against 1.9-2.4 s alone on two threads
WIDE_DET_VALUES = 12_000_000
#: same-size det inputs stacked into one call (TensorRT det profiles take batch 1 and split larger
#: batches; ONNX Runtime takes any); rec rows a multiple of PaddleOCR's 6, within the rec
#: profiles' max batch 50
GPU_CALLS = CallSizes(det_images=4, rec_rows=48, rec_columns=None)
CPU_CALLS = CallSizes(det_images=1, rec_rows=48, rec_columns=1440, wide_det_values=WIDE_DET_VALUES)


def padded_width(x: list[Any]) -> int:
    """A rec chunk's padded width: the longest axis of one row (W >= 320 > H=48 > C=3, NCHW or
    NHWC alike)."""
    return int(max(x[0].shape[1:]))


#: one engine call: ``(chunk index, first row, row count)`` for each chunk part it holds
RowCall = list[tuple[int, int, int]]


def plan_row_calls(rows: list[int], width: int, sizes: CallSizes) -> list[RowCall]:
    """Engine calls over equal-width chunks of ``rows[i]`` rows each, in order: each call a list
    of ``(chunk index, first row, row count)``. Without ``rec_columns`` whole chunks share a call
    up to ``rec_rows`` (a chunk bigger than that gets a call of its own); with it, a call holds
    at most ``max(1, rec_columns // width)`` rows and a chunk may span calls."""
    if sizes.rec_columns is None:
        calls: list[RowCall] = [[]]
        for index, count in enumerate(rows):
            if calls[-1] and sum(c[2] for c in calls[-1]) + count > sizes.rec_rows:
                calls.append([])
            calls[-1].append((index, 0, count))
        return [c for c in calls if c]
    most = max(1, min(sizes.rec_rows, sizes.rec_columns // max(1, width)))
    calls, room = [], 0
    for index, count in enumerate(rows):
        start = 0
        while start < count:
            if room == 0:
                calls.append([])
                room = most
            take = min(room, count - start)
            calls[-1].append((index, start, take))
            start, room = start + take, room - take
    return calls
