"""Glue between PaddleX predictors and engines built from fused graphs (issue 11).

:mod:`.graphs` builds the fused ONNX for a PaddleX model dir; :mod:`.predictors` adapts one live
PaddleX predictor instance to such an engine.
"""

from .graphs import fuse_model
from .predictors import (
    adapt_text_det_predictor,
    adapt_text_rec_predictor,
    adapt_textline_orientation_predictor,
    restore_predictor,
)

__all__ = [
    "adapt_text_det_predictor",
    "adapt_text_rec_predictor",
    "adapt_textline_orientation_predictor",
    "fuse_model",
    "restore_predictor",
]
