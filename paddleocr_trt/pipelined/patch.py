"""Route ``_OCRPipeline.predict`` to the pipelined path when it is safe and useful, else stock.

The pipelined path is taken only when all of these hold (otherwise stock code runs untouched):

* the switch is on: ``$PADDLEOCR_TRT_PIPELINE`` is not ``0`` and ``PaddleOCR(...,
  trt_pipeline=False)`` was not given;
* the input holds several images: a list/tuple of two or more, a directory, a PDF or TIFF;
* every model the call uses runs on one of our engines (not native Paddle, which is not safe to
  overlap and gains nothing), through the PaddleX predictor classes whose ``process`` the steps
  mirror (a PaddleX that changed them gets stock behaviour);
* no document pre-processing (its models are native Paddle; stock keeps it sequential).
"""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any

from ..integration import request as trt_request
from ..log import get_logger
from ..settings import pipeline_enabled

log = get_logger("pipelined")

_PATCHED_ATTR = "__paddleocr_trt_pipelined__"
_REQUEST_ATTR = "_paddleocr_trt_request"
_MULTI_SUFFIXES = (".pdf", ".tif", ".tiff")


def several_inputs(input: Any) -> bool:
    """Whether ``input`` names more than one image (cheap: no file is opened)."""
    if isinstance(input, (list, tuple)):
        return len(input) > 1
    if isinstance(input, (str, os.PathLike)):
        text = os.fspath(input)
        return text.lower().endswith(_MULTI_SUFFIXES) or os.path.isdir(text)
    return False


def _on_engine(predictor: Any, predictor_cls: type) -> bool:
    """Our engine runs it, and its ``process``/``apply`` are the PaddleX code the steps mirror."""
    from paddlex.inference.models.predictors.base_predictor import BasePredictor

    from ..integration.report import is_our_runner

    kind = type(predictor)
    if kind.process is not predictor_cls.process or kind.apply is not BasePredictor.apply:
        return False
    runner = getattr(predictor, "runner", None)
    return is_our_runner(runner) and getattr(runner, "backend", "paddle") != "paddle"


def ineligible_reason(pipeline: Any, input: Any, model_settings: dict) -> str | None:
    """Why this call takes the stock path (None: pipelined)."""
    from paddlex.inference.models.image_classification.predictor import ClasRunnerPredictor
    from paddlex.inference.models.text_detection.predictor import TextDetRunnerPredictor
    from paddlex.inference.models.text_recognition.predictor import TextRecRunnerPredictor

    request = getattr(pipeline, _REQUEST_ATTR, None)
    if request is not None and request.pipeline is False:
        return "switched off"
    if not several_inputs(input):
        return "one input image"
    if model_settings["use_doc_preprocessor"]:
        return "document pre-processing is on"
    if not _on_engine(pipeline.text_det_model, TextDetRunnerPredictor):
        return "text detection does not run on an engine"
    if not _on_engine(pipeline.text_rec_model, TextRecRunnerPredictor):
        return "text recognition does not run on an engine"
    if model_settings["use_textline_orientation"] and not _on_engine(
        pipeline.textline_orientation_model, ClasRunnerPredictor
    ):
        return "text-line orientation does not run on an engine"
    if not _switched_on():  # last: only pipelines on our engines read it
        return "switched off"
    return None


def _switched_on() -> bool:
    """``$PADDLEOCR_TRT_PIPELINE``, read at every call; a bad value (set after the pipeline was
    created: it was checked then) is said once and means the stock path, never an exception."""
    from ..settings import SettingsError

    try:
        return pipeline_enabled()
    except SettingsError as exc:
        from ..log import warn_once

        warn_once(("bad-setting", str(exc)), "%s; the stock OCR loop runs", exc)
        return False


def _wrap_predict(original: Any) -> Any:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def predict(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        settings = self.get_model_settings(
            a["use_doc_orientation_classify"], a["use_doc_unwarping"], a["use_textline_orientation"]
        )
        if (settings["use_doc_preprocessor"] and not self.use_doc_preprocessor) or (
            settings["use_textline_orientation"] and not self.use_textline_orientation
        ):
            return original(self, *args, **kwargs)  # stock logs and yields its error dict
        reason = ineligible_reason(self, a["input"], settings)
        if reason is not None:
            log.debug("stock OCR path: %s", reason)
            return original(self, *args, **kwargs)
        from .run import run_pipelined

        det_params = self.get_text_det_params(
            a["text_det_limit_side_len"],
            a["text_det_limit_type"],
            a["text_det_max_side_limit"],
            a["text_det_thresh"],
            a["text_det_box_thresh"],
            a["text_det_unclip_ratio"],
        )
        thresh = a["text_rec_score_thresh"]
        word_box = a["return_word_box"]
        run_settings = {
            "model_settings": settings,
            "text_rec_score_thresh": self.text_rec_score_thresh if thresh is None else thresh,
            "return_word_box": self.return_word_box if word_box is None else word_box,
        }
        return run_pipelined(self, a["input"], det_params, run_settings)

    setattr(predict, _PATCHED_ATTR, True)
    return predict


def _wrap_init(original: Any) -> Any:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # PaddleOCR builds its pipeline inside the request context (trt_pipeline=... lives there)
        setattr(self, _REQUEST_ATTR, trt_request.current())
        original(self, *args, **kwargs)

    return __init__


def patch_ocr_pipeline() -> None:
    """Install the router on PaddleX's ``_OCRPipeline`` (idempotent)."""
    from paddlex.inference.pipelines.ocr.pipeline import _OCRPipeline

    if getattr(_OCRPipeline.predict, _PATCHED_ATTR, False):
        return
    _OCRPipeline.__init__ = _wrap_init(_OCRPipeline.__init__)
    _OCRPipeline.predict = _wrap_predict(_OCRPipeline.predict)
