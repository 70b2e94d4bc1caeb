"""Adapt one live PaddleX predictor to an engine over a fused graph (per instance).

Why per instance: PaddleX's predictors keep their pre/post-processing in plain instance
attributes that ``process`` looks up on every call (det: ``pre_tfs["Normalize"/"ToCHW"/
"ToBatch"]``, text-line orientation: ``preprocessors[...]``, rec: ``post_op``), and call the
model as ``self.runner(x=x)``. Swapping exactly those entries changes what crosses the engine
boundary and nothing else: reading, resizing, sorting, cropping, DB post-processing and result
objects stay PaddleX's own code, and other instances are untouched.

* det / orientation: the host stops after resizing; the batch is the uint8 NHWC stack the fused
  graph normalises itself (4x fewer bytes than float32 NCHW).
* rec: ``post_op`` becomes :class:`~paddleocr_trt.postprocess.ctc.ArgmaxCTCDecoder` over the
  same character list, fed (index, max prob) instead of the softmax.

The caller owns the predictor's previous runner when it passes a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from ..backend.onnx.fuse import CTC_INDEX_OUTPUT, CTC_PROB_OUTPUT, UINT8_INPUT
from ..log import get_logger
from ..postprocess.ctc import ArgmaxCTCDecoder

log = get_logger("fusion")

#: Attribute set on an adapted predictor (value: what it was adapted to); refuses a second pass.
ADAPTED_ATTR = "_paddleocr_trt_fused"


class KeepUint8:
    """Stands in for PaddleX's normalise step: the fused graph normalises.

    Keeps the one host-side conversion det's ``NormalizeImage`` does before normalising
    (RGBA -> RGB) so 4-channel inputs behave as in stock PaddleX.
    """

    def __call__(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        for img in imgs:
            if img.ndim == 3 and img.shape[2] == 4:
                img = cv2.cvtColor(img, cv2.COLOR_RGBA2RGB)
            if img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"fused preprocessing needs HxWx3 images, got {img.shape}")
            out.append(img)
        return out


class KeepHWC:
    """Stands in for ``ToCHWImage``: the fused graph transposes."""

    def __call__(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return list(imgs)


class StackUint8:
    """Stands in for PaddleX's ``ToBatch``: ``np.stack`` without the float32 cast."""

    def __call__(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if not imgs:
            return []
        for img in imgs:
            if img.dtype != np.uint8:
                raise TypeError(
                    f"the fused engine takes uint8 images, the resized image is {img.dtype}"
                )
        return [np.ascontiguousarray(np.stack(imgs, axis=0))]


def _check_unadapted(predictor: Any) -> None:
    done = getattr(predictor, ADAPTED_ATTR, None)
    if done is not None:
        raise ValueError(f"{type(predictor).__name__} is already adapted ({done})")


def _check_runner(runner: Any, *, inputs: list[str] | None, outputs: list[str] | None) -> None:
    """Refuse a runner over the unfused graph early, when it says what its tensors are."""
    names_in = getattr(runner, "input_names", None)
    names_out = getattr(runner, "output_names", None)
    if inputs is not None and names_in is not None and list(names_in) != inputs:
        raise ValueError(f"{runner!r} takes {list(names_in)}; the fused graph takes {inputs}")
    if outputs is not None and names_out is not None and list(names_out) != outputs:
        raise ValueError(f"{runner!r} returns {list(names_out)}; the fused graph returns {outputs}")


def _set_runner(predictor: Any, runner: Any | None) -> None:
    if runner is not None:
        predictor.runner = runner


def _swap_preprocessing(ops: dict[str, Any], owner: str) -> None:
    missing = [k for k in ("Normalize", "ToCHW", "ToBatch") if k not in ops]
    if missing:
        raise ValueError(f"{owner} has no {missing} preprocessing step to move into the engine")
    ops["Normalize"] = KeepUint8()
    ops["ToCHW"] = KeepHWC()
    ops["ToBatch"] = StackUint8()


def adapt_text_det_predictor(predictor: Any, runner: Any | None = None) -> Any:
    """Make a ``TextDetRunnerPredictor`` feed uint8 NHWC to a det engine fused by
    :func:`~paddleocr_trt.backend.onnx.fuse.prepend_uint8_normalize`."""
    ops = getattr(predictor, "pre_tfs", None)
    if not isinstance(ops, dict) or "Resize" not in ops:
        raise TypeError(f"{type(predictor).__name__} is not a PaddleX text detection predictor")
    _check_unadapted(predictor)
    _check_runner(runner, inputs=[UINT8_INPUT], outputs=None)
    _swap_preprocessing(ops, type(predictor).__name__)
    setattr(predictor, ADAPTED_ATTR, "uint8 NHWC input")
    _set_runner(predictor, runner)
    log.debug("det predictor %s feeds uint8 NHWC", getattr(predictor, "model_name", "?"))
    return predictor


def adapt_textline_orientation_predictor(predictor: Any, runner: Any | None = None) -> Any:
    """Make a ``ClasRunnerPredictor`` (text-line orientation) feed uint8 NHWC (RGB, as its
    reader converts) to an engine fused by ``prepend_uint8_normalize``."""
    ops = getattr(predictor, "preprocessors", None)
    if not isinstance(ops, dict) or "Resize" not in ops:
        raise TypeError(f"{type(predictor).__name__} is not a PaddleX classification predictor")
    _check_unadapted(predictor)
    _check_runner(runner, inputs=[UINT8_INPUT], outputs=None)
    _swap_preprocessing(ops, type(predictor).__name__)
    setattr(predictor, ADAPTED_ATTR, "uint8 NHWC input")
    _set_runner(predictor, runner)
    return predictor


def adapt_text_rec_predictor(predictor: Any, runner: Any | None = None) -> Any:
    """Make a ``TextRecRunnerPredictor`` decode (index, max prob) from an engine fused by
    :func:`~paddleocr_trt.backend.onnx.fuse.append_ctc_argmax`."""
    post_op = getattr(predictor, "post_op", None)
    character = getattr(post_op, "character", None)
    if character is None or not hasattr(predictor, "pre_tfs"):
        raise TypeError(
            f"{type(predictor).__name__} is not a PaddleX CTC text recognition predictor"
        )
    _check_unadapted(predictor)
    _check_runner(runner, inputs=None, outputs=[CTC_INDEX_OUTPUT, CTC_PROB_OUTPUT])
    decoder = ArgmaxCTCDecoder(character, reverse=bool(getattr(post_op, "reverse", False)))
    predictor.post_op = decoder
    setattr(predictor, ADAPTED_ATTR, "CTC argmax output")
    _set_runner(predictor, runner)
    return predictor
