"""pytest fixtures for projects that use PaddleOCR with paddleocr-trt (``pytest11`` entry point).

pytest loads this module in every session of everyone who has the package installed, so it
imports nothing heavy at module level: Paddle, PaddleOCR and the comparator load inside fixtures.

Fixtures:
    ocr_backend            "native", "tensorrt" and "onnxruntime" (each test runs on each; an
                           engine case is skipped with the reason when it cannot be used here).
                           Narrow it: ``@pytest.mark.parametrize("ocr_backend", ["native"],
                           indirect=True)``
    paddleocr_pipeline     factory ``(backend="native", **kwargs) -> PaddleOCR`` (cached per
                           session); without model arguments it uses ``paddleocr_trt_models``.
    paddleocr_trt_models   the embedded PP-OCRv4 det/rec/cls model dirs (offline).
    ocr_sample_images      rendered sample images with their ground-truth lines.
Helper:
    assert_ocr_results_agree(a, b, *, min_agreement=0.99) for two ``PaddleOCR.predict`` lists.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

BACKENDS = ("native", "tensorrt", "onnxruntime")


# -- agreement between two result lists ---------------------------------------------------------


@dataclass(frozen=True)
class OCRAgreement:
    """How far two OCR runs over the same images agree (box F1 at IoU, text exact/CER)."""

    images: int
    box_f1: float
    text_exact_match_rate: float
    text_cer: float
    lines_a: int
    lines_b: int

    def agrees(self, min_agreement: float) -> bool:
        return self.box_f1 >= min_agreement and self.text_exact_match_rate >= min_agreement


def _field(result: Any, *names: str) -> list[Any]:
    for name in names:
        try:
            value = result[name]
        except (KeyError, TypeError):
            continue
        if value is not None:
            return list(value)
    return []


def ocr_agreement(
    a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], *, iou_threshold: float = 0.5
) -> OCRAgreement:
    """Compare two ``PaddleOCR.predict`` result lists image by image.

    Boxes are matched one-to-one at ``iou_threshold``; texts are compared line by line in the
    pipeline's reading order, a missing line counting as an empty string (a full miss).
    """
    import numpy as np

    from paddleocr_trt.comparator.metrics import match_boxes, text_agreement

    if len(a) != len(b):
        raise AssertionError(f"result lists differ in length: {len(a)} images vs {len(b)}")
    tp = ref_boxes = cand_boxes = 0
    exact = count = edits = ref_chars = 0
    for res_a, res_b in zip(a, b, strict=True):
        polys_a = [np.asarray(p, dtype=np.float64) for p in _field(res_a, "rec_polys", "dt_polys")]
        polys_b = [np.asarray(p, dtype=np.float64) for p in _field(res_b, "rec_polys", "dt_polys")]
        match = match_boxes(polys_a, polys_b, iou_threshold)
        tp, ref_boxes, cand_boxes = (
            tp + match.true_positives,
            ref_boxes + match.reference_count,
            cand_boxes + match.candidate_count,
        )
        texts_a = [str(t) for t in _field(res_a, "rec_texts")]
        texts_b = [str(t) for t in _field(res_b, "rec_texts")]
        n = max(len(texts_a), len(texts_b))
        texts = text_agreement(
            texts_a + [""] * (n - len(texts_a)), texts_b + [""] * (n - len(texts_b))
        )
        exact, count = exact + texts.exact_matches, count + texts.count
        edits, ref_chars = edits + texts.edits, ref_chars + texts.reference_chars
    total_boxes = ref_boxes + cand_boxes
    return OCRAgreement(
        images=len(a),
        box_f1=1.0 if total_boxes == 0 else 2.0 * tp / total_boxes,
        text_exact_match_rate=1.0 if count == 0 else exact / count,
        text_cer=(0.0 if edits == 0 else 1.0) if ref_chars == 0 else edits / ref_chars,
        lines_a=ref_boxes,
        lines_b=cand_boxes,
    )


def assert_ocr_results_agree(
    a: Sequence[Mapping[str, Any]],
    b: Sequence[Mapping[str, Any]],
    *,
    min_agreement: float = 0.99,
    iou_threshold: float = 0.5,
) -> OCRAgreement:
    """Fail unless box F1 and the text exact-match rate both reach ``min_agreement``."""
    agreement = ocr_agreement(a, b, iou_threshold=iou_threshold)
    if not agreement.agrees(min_agreement):
        raise AssertionError(
            f"OCR results disagree over {agreement.images} image(s): "
            f"box F1 {agreement.box_f1:.4f} (IoU {iou_threshold}), "
            f"text exact-match {agreement.text_exact_match_rate:.4f}, "
            f"CER {agreement.text_cer:.4f}; need >= {min_agreement} "
            f"({agreement.lines_a} vs {agreement.lines_b} boxes)"
        )
    return agreement


# -- fixtures -----------------------------------------------------------------------------------


def tensorrt_unavailable_reason(precision: str = "fp16") -> str | None:
    """Why ``PaddleOCR(use_tensorrt=True, device="gpu")`` would not get engines here, or None."""
    from paddleocr_trt.integration.decision import decide
    from paddleocr_trt.integration.request import TensorRTRequest
    from paddleocr_trt.settings import ENV_DISABLE, is_disabled, settings_problem

    problem = settings_problem()
    if problem is not None:
        return problem
    if is_disabled():
        return f"paddleocr_trt is disabled by {ENV_DISABLE}"
    status = decide(TensorRTRequest(precision=precision, device="gpu"), {"device_type": "gpu"})
    return None if status.ok else status.message()


def onnxruntime_unavailable_reason() -> str | None:
    """Why ``PaddleOCR(trt_engine="onnxruntime")`` would not get ONNX Runtime engines, or None."""
    from paddleocr_trt.integration.decision import onnxruntime_status
    from paddleocr_trt.settings import ENV_DISABLE, is_disabled, settings_problem

    problem = settings_problem()
    if problem is not None:
        return problem
    if is_disabled():
        return f"paddleocr_trt is disabled by {ENV_DISABLE}"
    status = onnxruntime_status()
    return None if status.ok else status.message()


def _skip_unless_engine(backend: str, precision: str) -> None:
    if backend == "tensorrt":
        reason = tensorrt_unavailable_reason(precision)
        if reason is not None:
            pytest.skip(f"TensorRT backend unavailable: {reason}")
    elif backend == "onnxruntime":
        reason = onnxruntime_unavailable_reason()
        if reason is not None:
            pytest.skip(f"ONNX Runtime backend unavailable: {reason}")


@pytest.fixture(params=BACKENDS)
def ocr_backend(request: pytest.FixtureRequest) -> str:
    """``"native"``, ``"tensorrt"`` or ``"onnxruntime"``; an engine case is skipped (with why)
    where that engine cannot run."""
    backend = str(request.param)
    if backend not in BACKENDS:
        raise pytest.UsageError(f"ocr_backend must be one of {BACKENDS}, got {backend!r}")
    _skip_unless_engine(backend, "fp16")
    return backend


@pytest.fixture(scope="session")
def paddleocr_trt_models() -> Any:
    """The embedded PP-OCRv4 models (``$PADDLEOCR_TRT_MODELS_DIR`` or the user cache)."""
    from paddleocr_trt.testing.models import prepare_models

    return prepare_models()


@pytest.fixture(scope="session")
def ocr_sample_images(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """Rendered images (English, Chinese, rotated, tiny, ...) with their true lines."""
    from paddleocr_trt.testing.images import render_sample_images

    return render_sample_images(tmp_path_factory.mktemp("paddleocr_trt_samples"))


_MODEL_ARGS = ("text_detection_model_dir", "text_recognition_model_dir", "lang", "ocr_version")


@pytest.fixture(scope="session")
def paddleocr_pipeline(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Factory ``(backend="native", **kwargs) -> PaddleOCR``, one pipeline per distinct call.

    ``"tensorrt"`` means ``use_tensorrt=True`` on ``device="gpu"`` (skipped where unavailable);
    ``"onnxruntime"`` means ``trt_engine="onnxruntime"`` (CUDA provider with onnxruntime-gpu on
    a GPU, else the CPU provider; engines are cached under ``$PADDLEOCR_TRT_CACHE_DIR``);
    ``"native"`` runs plain Paddle on the GPU when there is one, else on the CPU.
    """
    os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
    pipelines: dict[tuple[str, str], Any] = {}

    def make(backend: str = "native", **kwargs: Any) -> Any:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        _skip_unless_engine(backend, str(kwargs.get("precision", "fp16")).lower())
        key = (backend, repr(sorted(kwargs.items())))
        if key in pipelines:
            return pipelines[key]
        options = dict(kwargs)
        if not any(name in options for name in _MODEL_ARGS):
            models = request.getfixturevalue("paddleocr_trt_models")
            options = {**models.paddleocr_kwargs(), **options}
        if backend == "tensorrt":
            import paddleocr_trt

            paddleocr_trt.activate()
            options.setdefault("device", "gpu")
            options["use_tensorrt"] = True
            options.setdefault("precision", "fp16")
        elif backend == "onnxruntime":
            import paddleocr_trt
            from paddleocr_trt.integration.decision import cuda_status

            paddleocr_trt.activate()
            options.setdefault("device", "gpu" if cuda_status().ok else "cpu")
            options["trt_engine"] = "onnxruntime"
        else:
            from paddleocr_trt.integration.decision import cuda_status

            options.setdefault("device", "gpu" if cuda_status().ok else "cpu")
            options["use_tensorrt"] = False
        from paddleocr import PaddleOCR

        pipelines[key] = PaddleOCR(**options)
        return pipelines[key]

    yield make
    pipelines.clear()
