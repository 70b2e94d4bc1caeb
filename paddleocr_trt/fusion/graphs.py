"""Which fused graph each PaddleX OCR model gets, read from its own inference.yml.

Why here: the transforms in :mod:`paddleocr_trt.backend.onnx.fuse` know nothing of PaddleX; the
choice per model type (argmax for rec, uint8 normalisation for det and text-line orientation)
and the channel order follow what PaddleX's predictors hold at the point where the engine now
takes over (see :mod:`.predictors`).
"""

from __future__ import annotations

from pathlib import Path

import onnx

from ..backend.onnx.fuse import append_ctc_argmax, load_normalize_args, prepend_uint8_normalize
from ..backend.onnx.fuse_db import append_db_bitmap
from ..model_types import ModelType


def fuse_model(
    model_type: ModelType | str,
    model: onnx.ModelProto,
    model_dir: str | Path,
    *,
    index_dtype: str = "int32",
) -> onnx.ModelProto:
    """The fused copy of ``model`` (converted from ``model_dir``) for its PaddleX predictor.

    rec: outputs (index, max prob). det also returns the packed DB bitmap (input ``db_thresh``).
    det and text-line orientation: input uint8 NHWC in the
    channel order PaddleX's predictor holds after reading (det: the ``DecodeImage`` mode of
    inference.yml, BGR for PP-OCR; orientation: RGB, its reader converts), normalised with the
    ``NormalizeImage`` parameters of the same inference.yml.
    """
    mtype = ModelType.parse(model_type)
    if mtype is ModelType.RECOGNITION:
        return append_ctc_argmax(model, index_dtype=index_dtype)
    args = load_normalize_args(model_dir)
    fused = prepend_uint8_normalize(model, **args)
    return append_db_bitmap(fused) if mtype is ModelType.DETECTION else fused
