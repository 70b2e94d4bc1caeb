"""PaddleX's DB post-processing fed by the fused det graph: packed bitmap + resident map.

PaddleX 3.7.2 ``DBPostProcess.process`` thresholds the whole map, then finds contours on the
bitmap and scores each candidate box by the map's mean inside it (``box_score_fast`` /
``box_score_slow``: ``cv2.mean(pred[ymin:ymax + 1, xmin:xmax + 1], mask)``). Here the bitmap
comes from the engine (:func:`~paddleocr_trt.backend.onnx.fuse_db.append_db_bitmap`) and the
map stays with the engine. The stock instance's own loop (``boxes_from_bitmap`` /
``polygons_from_bitmap`` with its ``get_mini_boxes`` and ``unclip``) runs twice per image:

1. each box score it asks for is recorded as a :class:`~.resident.MaskedWindow` (the window
   and ``fillPoly`` mask ``box_score_*`` would use) and answered "below the threshold";
2. the engine side sums them all in one call (``ResidentMap.masked_sums``: 8 bytes a box, not
   its window) and the loop runs again, answered with ``sum * (1. / count)``, ``cv2.mean``'s
   own arithmetic, so boxes and scores are stock's bit for bit.

Pass 2 checks each request is the one recorded, and the first score of each instance is also
computed the stock way (one window copy) and compared: a PaddleX whose ``box_score_*`` draws
its masks differently makes us read windows instead, never answer differently.

A single full map (native Paddle after a fallback, an unfused engine) goes to the stock
instance unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from ..log import get_logger, warn_once
from .bitmap import unpack_db_bitmap
from .resident import HostResidentMap, ImageWindows, MaskedWindow, ResidentSlice, masked_mean

log = get_logger("postprocess.db")


def fast_score_window(shape: Sequence[int], _box: np.ndarray) -> tuple[int, int, np.ndarray]:
    """(y0, x0, mask) of what PaddleX 3.7.2 ``box_score_fast(bitmap, _box)`` averages, line
    for line."""
    h, w = shape[:2]
    box = _box.copy()
    xmin = max(0, min(math.floor(box[:, 0].min()), w - 1))
    xmax = max(0, min(math.ceil(box[:, 0].max()), w - 1))
    ymin = max(0, min(math.floor(box[:, 1].min()), h - 1))
    ymax = max(0, min(math.ceil(box[:, 1].max()), h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    box[:, 0] = box[:, 0] - xmin
    box[:, 1] = box[:, 1] - ymin
    cv2.fillPoly(mask, box.reshape(1, -1, 2).astype(np.int32), 1)
    return int(ymin), int(xmin), mask


def slow_score_window(shape: Sequence[int], contour: np.ndarray) -> tuple[int, int, np.ndarray]:
    """(y0, x0, mask) of what PaddleX 3.7.2 ``box_score_slow(bitmap, contour)`` averages,
    line for line."""
    h, w = shape[:2]
    contour = np.reshape(contour.copy(), (-1, 2))
    xmin = np.clip(np.min(contour[:, 0]), 0, w - 1)
    xmax = np.clip(np.max(contour[:, 0]), 0, w - 1)
    ymin = np.clip(np.min(contour[:, 1]), 0, h - 1)
    ymax = np.clip(np.max(contour[:, 1]), 0, h - 1)
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    contour[:, 0] = contour[:, 0] - xmin
    contour[:, 1] = contour[:, 1] - ymin
    cv2.fillPoly(mask, contour.reshape(1, -1, 2).astype(np.int32), 1)
    return int(ymin), int(xmin), mask


class _ScoredLoop:
    """Stands in for the stock instance as ``self`` of its own loop methods: every attribute
    is the stock one except the two box scores, which are recorded (pass 1) or replayed."""

    def __init__(self, owner: BitmapDBPostProcess, pred: ImageWindows) -> None:
        self._owner = owner
        self._pred = pred
        self.requests: list[tuple[str, np.ndarray, MaskedWindow]] = []
        self.scores: list[float] | None = None  # set for pass 2
        self._next = 0
        self._mini_boxes: list[tuple[np.ndarray, Any]] = []
        self._next_mini = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._owner.stock, name)

    def get_mini_boxes(self, contour: np.ndarray) -> Any:
        """Pass 1's results reused by pass 2 for the same contours (the calls come in the
        same order; anything else, e.g. an unclipped box, is computed)."""
        memo = self._mini_boxes
        if self.scores is None:
            result = self._owner.stock.get_mini_boxes(contour)
            memo.append((contour, result))
            return result
        k = self._next_mini
        if k < len(memo) and np.array_equal(memo[k][0], contour):
            self._next_mini = k + 1
            return memo[k][1]
        return self._owner.stock.get_mini_boxes(contour)

    def box_score_fast(self, bitmap: Any, box: np.ndarray) -> float:
        return self._score("fast", bitmap, box)

    def box_score_slow(self, bitmap: Any, contour: np.ndarray) -> float:
        return self._score("slow", bitmap, contour)

    def _score(self, kind: str, bitmap: Any, points: np.ndarray) -> float:
        stock_score = getattr(self._owner.stock, f"box_score_{kind}")
        if bitmap is not self._pred or self._owner.read_windows:
            return stock_score(bitmap, points)
        if self.scores is None:  # pass 1: record, answer "below any threshold"
            make = fast_score_window if kind == "fast" else slow_score_window
            y0, x0, mask = make(bitmap.shape, points)
            window = MaskedWindow(self._pred.b, self._pred.c, y0, x0, mask)
            self.requests.append((kind, points.copy(), window))
            return -math.inf
        k, self._next = self._next, self._next + 1
        if k < len(self.requests):
            rec_kind, rec_points, _ = self.requests[k]
            if rec_kind == kind and np.array_equal(rec_points, points):
                return self._owner.checked(self.scores[k], lambda: stock_score(bitmap, points))
        log.debug("DB pass 2 asked for an unrecorded box score; reading its window")
        return stock_score(bitmap, points)


class BitmapDBPostProcess:
    """Wraps a PaddleX ``DBPostProcess`` instance; called exactly like it."""

    def __init__(self, stock: Any) -> None:
        self.stock = stock
        #: True once a recorded score did not match stock's: read windows from then on
        self.read_windows = False
        self._verified = False

    def __getattr__(self, name: str) -> Any:  # thresh, box_thresh, ... read by PaddleX
        return getattr(self.stock, name)

    def checked(self, score: float, stock_score: Any) -> float:
        """The first score of this instance is also computed the stock way and compared."""
        if self._verified:
            return score
        want = stock_score()
        self._verified = True
        if want != score:
            self.read_windows = True
            warn_once(
                ("db-masked-score-mismatch", id(self)),
                "DB box score summed by the engine (%r) differs from PaddleX's box_score (%r): "
                "reading box windows instead (more bytes from the engine, same results)",
                score,
                want,
            )
        return want

    def __call__(
        self,
        preds: Sequence[Any],
        img_shapes: Sequence[Any],
        thresh: float | None = None,
        box_thresh: float | None = None,
        unclip_ratio: float | None = None,
    ) -> tuple[list[Any], list[Any]]:
        if len(preds) == 1:  # the whole map: native Paddle or an unfused engine
            whole = preds[0] if isinstance(preds[0], np.ndarray) else preds[0].to_numpy()
            return self.stock([whole], img_shapes, thresh, box_thresh, unclip_ratio)
        resident, packed = preds[0], preds[1]
        if isinstance(resident, np.ndarray):  # an engine runner that returns arrays
            resident = HostResidentMap(resident)
        stock = self.stock
        boxes, scores = [], []
        try:
            for b, img_shape in enumerate(img_shapes):
                box, score = self._process(
                    ImageWindows(resident, b),
                    unpack_db_bitmap(packed[b, 0]),
                    img_shape,
                    box_thresh or stock.box_thresh,
                    unclip_ratio or stock.unclip_ratio,
                )
                boxes.append(box)
                scores.append(score)
        finally:
            if not isinstance(resident, ResidentSlice):  # a slice's owner releases the map
                resident.release()
        return boxes, scores

    def _process(
        self, pred: ImageWindows, segmentation: np.ndarray, img_shape: Any, box_thresh, unclip
    ) -> tuple[Any, Any]:
        """``DBPostProcess.process`` after its ``pred > thresh`` (done by the engine)."""
        stock = self.stock
        src_h, src_w, _ratio_h, _ratio_w = img_shape
        if stock.use_dilation:
            mask = cv2.dilate(np.array(segmentation).astype(np.uint8), np.array([[1, 1], [1, 1]]))
        else:
            # 0/1 uint8, not bool: the loops' ``(bitmap * 255).astype(np.uint8)`` then stays
            # uint8 (the same 0/255 image) instead of going through int64 (3 ms a page)
            mask = segmentation.view(np.uint8)
        if stock.box_type == "poly":
            loop = type(stock).polygons_from_bitmap
        elif stock.box_type == "quad":
            loop = type(stock).boxes_from_bitmap
        else:
            raise ValueError("box_type can only be one of ['quad', 'poly']")
        if self.read_windows:
            return loop(stock, pred, mask, src_w, src_h, box_thresh, unclip)
        scored = _ScoredLoop(self, pred)
        loop(scored, pred, mask, src_w, src_h, box_thresh, unclip)  # pass 1: the requests
        windows = [request[2] for request in scored.requests]
        sums = pred.resident.masked_sums(windows) if windows else []
        scored.scores = [masked_mean(float(s), w.count) for s, w in zip(sums, windows, strict=True)]
        return loop(scored, pred, mask, src_w, src_h, box_thresh, unclip)
