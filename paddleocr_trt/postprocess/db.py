"""PaddleX's DB post-processing fed by the fused det graph: packed bitmap + resident map.

PaddleX 3.7.2 ``DBPostProcess.process`` thresholds the whole map, then finds contours on the
bitmap and scores each candidate box by the map's mean inside it (``box_score_fast`` /
``box_score_slow`` slice ``pred[ymin:ymax + 1, xmin:xmax + 1]``). Here the bitmap comes from
the engine (:func:`~paddleocr_trt.backend.onnx.fuse_db.append_db_bitmap`) and ``pred`` is an
:class:`~paddleocr_trt.postprocess.resident.ImageWindows`, whose slices copy exactly those
windows from the map the engine kept. Everything else is the stock instance's own code
(``boxes_from_bitmap``, ``polygons_from_bitmap``, ``get_mini_boxes``, ``unclip``, ``cv2.mean``),
called with the same values, so boxes and scores are stock's bit for bit.

A single full map (native Paddle after a fallback, an unfused engine) goes to the stock
instance unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from ..backend.onnx.fuse_db import unpack_db_bitmap
from .resident import HostResidentMap, ImageWindows, ResidentSlice


class BitmapDBPostProcess:
    """Wraps a PaddleX ``DBPostProcess`` instance; called exactly like it."""

    def __init__(self, stock: Any) -> None:
        self.stock = stock

    def __getattr__(self, name: str) -> Any:  # thresh, box_thresh, ... read by PaddleX
        return getattr(self.stock, name)

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
            mask = segmentation
        if stock.box_type == "poly":
            return stock.polygons_from_bitmap(pred, mask, src_w, src_h, box_thresh, unclip)
        if stock.box_type == "quad":
            return stock.boxes_from_bitmap(pred, mask, src_w, src_h, box_thresh, unclip)
        raise ValueError("box_type can only be one of ['quad', 'poly']")
