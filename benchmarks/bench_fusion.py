"""Host time and bytes per page: stock PaddleX pre/post-processing vs the fused-graph paths.

Only host work is timed (the models run once, in set-up, on ONNX Runtime, to get real outputs):

* group ``rec-post``: PaddleX ``CTCLabelDecode`` on the full (N, T, 6625) softmax of a page vs
  :class:`ArgmaxCTCDecoder` on (index, max prob) from the fused graph; ``extra_info`` has the
  output bytes per page of each.
* group ``det-pre``: PaddleX ``NormalizeImage`` + ``ToCHWImage`` + ``ToBatch`` on a resized
  1000x1400 page vs the uint8 stand-ins the adapted predictor runs; ``extra_info`` has the bytes
  sent to the engine.

A "page" is 30 text lines in 5 rec batches of 6 at width 960 (T = 120): 95 MB of softmax, the
middle of the 85-155 MB measured for real 1000x1400 pages (NOTES.md section 7).

    pytest benchmarks/bench_fusion.py --benchmark-json=fusion.json
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from paddleocr_trt.backend.onnx.convert import convert_to_onnx
from paddleocr_trt.backend.onnx.fuse import append_ctc_argmax, load_normalize_args
from paddleocr_trt.comparator.inputs import build_validation_inputs
from paddleocr_trt.engines.onnxruntime.runner import OnnxRuntimeRunner
from paddleocr_trt.fusion.predictors import KeepHWC, KeepUint8, StackUint8
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.postprocess.ctc import ArgmaxCTCDecoder

BATCHES_PER_PAGE = 5
REC_BATCH_SHAPE = (6, 3, 48, 960)
PAGE_HW = (1000, 1400)


@pytest.fixture(scope="module")
def rec_page(ocr_models, sample_images, tmp_path_factory):
    """(full softmax outputs, fused outputs, PaddleX CTCLabelDecode) for one page."""
    import yaml
    from paddlex.inference.models.text_recognition.processors import CTCLabelDecode

    work = tmp_path_factory.mktemp("bench_fusion")
    plain = convert_to_onnx(ocr_models.rec, work / "rec.onnx", ModelType.RECOGNITION).onnx_path
    fused_path = work / "rec.argmax.onnx"
    onnx.save(append_ctc_argmax(onnx.load(str(plain))), str(fused_path))
    x = build_validation_inputs(
        ModelType.RECOGNITION,
        [s.path for s in sample_images[:3]],
        model_dir=ocr_models.rec,
        max_shape=REC_BATCH_SHAPE,
    )[-1]  # real text rows tiled to exactly REC_BATCH_SHAPE
    assert x.shape == REC_BATCH_SHAPE
    full = OnnxRuntimeRunner(plain)([x])
    fused = OnnxRuntimeRunner(fused_path)([x])
    config = yaml.safe_load((ocr_models.rec / "inference.yml").read_text(encoding="utf-8"))
    ctc = CTCLabelDecode(character_list=config["PostProcess"]["character_dict"])
    assert ArgmaxCTCDecoder(ctc.character)(fused) == ctc(full)  # same answer on both paths
    return full, fused, ctc


def _page_bytes(outputs: list[np.ndarray]) -> int:
    return BATCHES_PER_PAGE * sum(o.nbytes for o in outputs)


@pytest.mark.benchmark(group="rec-post")
def test_rec_post_stock_full_softmax(benchmark, rec_page) -> None:
    full, _, ctc = rec_page
    benchmark.extra_info["output_bytes_per_page"] = _page_bytes(full)
    benchmark(lambda: [ctc(full) for _ in range(BATCHES_PER_PAGE)])


@pytest.mark.benchmark(group="rec-post")
def test_rec_post_fused_argmax(benchmark, rec_page) -> None:
    _, fused, ctc = rec_page
    decoder = ArgmaxCTCDecoder(ctc.character)
    benchmark.extra_info["output_bytes_per_page"] = _page_bytes(fused)
    benchmark(lambda: [decoder(fused) for _ in range(BATCHES_PER_PAGE)])


@pytest.fixture(scope="module")
def det_page(ocr_models, sample_images) -> list[np.ndarray]:
    """One page as det holds it after DetResizeForTest (BGR uint8, sides multiples of 32)."""
    import cv2
    from paddlex.inference.common.reader import ReadImage
    from paddlex.inference.models.text_detection.processors import DetResizeForTest

    page = ReadImage(format="BGR").read(str(sample_images[0].path))
    page = cv2.resize(page, (PAGE_HW[1], PAGE_HW[0]))
    resize = DetResizeForTest(limit_side_len=64, limit_type="min")  # OCR.yaml's default
    return resize(imgs=[page], max_side_limit=4000)[0]


@pytest.mark.benchmark(group="det-pre")
def test_det_pre_stock_normalize(benchmark, ocr_models, det_page) -> None:
    from paddlex.inference.models.common import ToBatch, ToCHWImage
    from paddlex.inference.models.text_detection.processors import NormalizeImage

    normalize = NormalizeImage(**load_normalize_args(ocr_models.det), order="hwc")
    to_chw, to_batch = ToCHWImage(), ToBatch()
    x = benchmark(lambda: to_batch(imgs=to_chw(imgs=normalize(imgs=det_page))))[0]
    benchmark.extra_info["input_bytes"] = int(x.nbytes)
    benchmark.extra_info["shape"] = list(x.shape)


@pytest.mark.benchmark(group="det-pre")
def test_det_pre_fused_uint8(benchmark, det_page) -> None:
    keep, hwc, stack = KeepUint8(), KeepHWC(), StackUint8()
    x = benchmark(lambda: stack(imgs=hwc(imgs=keep(imgs=det_page))))[0]
    benchmark.extra_info["input_bytes"] = int(x.nbytes)
    benchmark.extra_info["shape"] = list(x.shape)
