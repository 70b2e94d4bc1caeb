"""Real PaddleX predictors and a real PaddleOCR pipeline adapted to fused engines (issue 11):
same results as stock, per field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from paddleocr_trt.comparator.inputs import _crops
from paddleocr_trt.engines.onnxruntime.runner import OnnxRuntimeRunner
from paddleocr_trt.fusion import (
    adapt_text_det_predictor,
    adapt_text_rec_predictor,
    adapt_textline_orientation_predictor,
    fuse_model,
    restore_predictor,
)
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.testing.models import CLS_MODEL_NAME, DET_MODEL_NAME, REC_MODEL_NAME

_NAMES = {
    ModelType.DETECTION: DET_MODEL_NAME,
    ModelType.RECOGNITION: REC_MODEL_NAME,
    ModelType.CLASSIFICATION: CLS_MODEL_NAME,
}
_ADAPT = {
    ModelType.DETECTION: adapt_text_det_predictor,
    ModelType.RECOGNITION: adapt_text_rec_predictor,
    ModelType.CLASSIFICATION: adapt_textline_orientation_predictor,
}


@pytest.fixture(scope="module")
def fused_paths(onnx_models, ocr_models, tmp_path_factory) -> dict[ModelType, Path]:
    out = tmp_path_factory.mktemp("fused")
    paths = {}
    for mtype in ModelType:
        source = onnx_models[mtype].onnx_path
        paths[mtype] = out / f"{mtype.value}.fused.onnx"
        fused = fuse_model(mtype, onnx.load(str(source)), ocr_models.dir_for(mtype))
        onnx.save(fused, str(paths[mtype]))
    return paths


def _predictor_pair(mtype, ocr_models, onnx_models, fused_paths, **kwargs):
    """(stock PaddleX predictor on ORT over the plain graph, adapted one on the fused graph)."""
    from paddlex import create_predictor

    def make():
        return create_predictor(
            _NAMES[mtype], model_dir=str(ocr_models.dir_for(mtype)), device="cpu", **kwargs
        )

    stock, adapted = make(), make()
    stock.runner = OnnxRuntimeRunner(onnx_models[mtype].onnx_path)
    _ADAPT[mtype](adapted, OnnxRuntimeRunner(fused_paths[mtype]))
    return stock, adapted


@pytest.fixture(scope="module")
def crops(sample_images) -> list[np.ndarray]:
    """Real text-line crops, ordered by aspect ratio as the OCR pipeline batches them.

    The 2608 px long line (a 6 x 48 x 2016 batch, seconds on a CPU) is left to test_fuse_ctc.
    """
    found = [
        c for c in _crops([s.path for s in sample_images], None) if c.shape[1] < 20 * c.shape[0]
    ]
    return sorted(found, key=lambda c: c.shape[1] / c.shape[0])


def test_det_predictor_same_polys(ocr_models, onnx_models, fused_paths, sample_images) -> None:
    stock, adapted = _predictor_pair(ModelType.DETECTION, ocr_models, onnx_models, fused_paths)
    paths = [str(s.path) for s in sample_images]
    total = 0
    for want, got in zip(stock.predict(paths), adapted.predict(paths), strict=True):
        np.testing.assert_array_equal(np.asarray(got["dt_polys"]), np.asarray(want["dt_polys"]))
        assert list(got["dt_scores"]) == list(want["dt_scores"])  # exact: same map windows
        total += len(want["dt_polys"])
    assert total >= 10
    with pytest.raises(ValueError, match="already adapted"):
        adapt_text_det_predictor(adapted)
    # falling back to an unfused engine: PaddleX's own steps come back
    restore_predictor(adapted, OnnxRuntimeRunner(onnx_models[ModelType.DETECTION].onnx_path))
    again = adapted.predict(paths[:1])
    np.testing.assert_array_equal(
        np.asarray(next(iter(again))["dt_polys"]),
        np.asarray(next(iter(stock.predict(paths[:1])))["dt_polys"]),
    )
    with pytest.raises(ValueError, match="not adapted"):
        restore_predictor(adapted)


def test_rec_predictor_same_texts_and_word_boxes(
    ocr_models, onnx_models, fused_paths, crops
) -> None:
    stock, adapted = _predictor_pair(
        ModelType.RECOGNITION, ocr_models, onnx_models, fused_paths, batch_size=6
    )
    for word_box, batch in ((False, crops[:8]), (True, crops)):
        want = list(stock.predict(batch, return_word_box=word_box))
        got = list(adapted.predict(batch, return_word_box=word_box))
        assert [g["rec_text"] for g in got] == [w["rec_text"] for w in want]
        assert [g["rec_score"] for g in got] == [w["rec_score"] for w in want]
    assert isinstance(got[0]["rec_text"], tuple)  # word-box form: (text, [cols, words, ...])
    assert any("Invoice" in w["rec_text"][0] for w in want)
    # an adapted rec predictor on an unfused engine (fallback) still decodes the same
    adapted.runner = stock.runner
    fallback = list(adapted.predict(crops[:6]))
    assert [f["rec_text"] for f in fallback] == [w["rec_text"] for w in stock.predict(crops[:6])]
    restore_predictor(adapted)
    assert type(adapted.post_op) is type(stock.post_op)


def test_orientation_predictor_same_labels(ocr_models, onnx_models, fused_paths, crops) -> None:
    stock, adapted = _predictor_pair(
        ModelType.CLASSIFICATION, ocr_models, onnx_models, fused_paths, batch_size=4
    )
    samples = [c for crop in crops[:6] for c in (crop, np.ascontiguousarray(crop[::-1, ::-1]))]
    want = list(stock.predict(samples))
    got = list(adapted.predict(samples))
    assert [g["label_names"] for g in got] == [w["label_names"] for w in want]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g["scores"], w["scores"], rtol=0, atol=1e-6)
    assert {w["label_names"][0] for w in want} == {"0_degree", "180_degree"}


def test_adapt_refuses_wrong_predictor_or_runner(ocr_models, onnx_models, fused_paths) -> None:
    stock, _ = _predictor_pair(ModelType.RECOGNITION, ocr_models, onnx_models, fused_paths)
    with pytest.raises(TypeError, match="text detection"):
        adapt_text_det_predictor(stock)
    with pytest.raises(ValueError, match="fused graph returns"):
        adapt_text_rec_predictor(stock, stock.runner)  # the plain graph's softmax runner


# -- the whole PaddleOCR pipeline: stock Paddle vs adapted on ONNX Runtime ----------------------


def _page(res) -> dict:
    return {
        "texts": list(res["rec_texts"]),
        "scores": np.asarray(res["rec_scores"], dtype=np.float64),
        "polys": np.asarray(res["dt_polys"], dtype=np.float64),
        "angles": list(res["textline_orientation_angles"]),
        "words": list(res["text_word"]),
        "word_boxes": [np.asarray(b, dtype=np.float64) for b in res["text_word_boxes"]],
    }


def test_pipeline_adapted_matches_stock(ocr_models, fused_paths, sample_images) -> None:
    from paddleocr import PaddleOCR

    def make():
        return PaddleOCR(
            **ocr_models.paddleocr_kwargs(textline_orientation=True),
            device="cpu",
            enable_mkldnn=False,
        )

    stock, adapted = make(), make()
    inner = adapted.paddlex_pipeline._pipeline
    adapt_text_det_predictor(
        inner.text_det_model, OnnxRuntimeRunner(fused_paths[ModelType.DETECTION])
    )
    adapt_text_rec_predictor(
        inner.text_rec_model, OnnxRuntimeRunner(fused_paths[ModelType.RECOGNITION])
    )
    adapt_textline_orientation_predictor(
        inner.textline_orientation_model, OnnxRuntimeRunner(fused_paths[ModelType.CLASSIFICATION])
    )
    lines = 0
    # large_page (3200x1400 at near-native det resolution) costs ~10 s here for nothing new;
    # the det predictor test above covers it exactly.
    for sample in (s for s in sample_images if s.name != "large_page"):
        want = _page(stock.predict(str(sample.path), return_word_box=True)[0])
        got = _page(adapted.predict(str(sample.path), return_word_box=True)[0])
        assert got["texts"] == want["texts"], sample.name
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=0, atol=1e-5)
        assert got["polys"].shape == want["polys"].shape
        np.testing.assert_allclose(got["polys"], want["polys"], rtol=0, atol=1)
        assert got["angles"] == want["angles"]
        assert got["words"] == want["words"]
        for g, w in zip(got["word_boxes"], want["word_boxes"], strict=True):
            np.testing.assert_allclose(g, w, rtol=0, atol=1)
        lines += len(want["texts"])
    assert lines >= 10
