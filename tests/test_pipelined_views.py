"""The pipelined path and PaddleX's own loop writing their batches into a TensorRTRunner's input
buffers: same results as on ONNX Runtime, tolerance zero.

One real PaddleOCR instance on the ONNX Runtime engines of ``fixtures.engines``; its results are
the reference. Then each model's fused runner gets a TensorRTRunner over the test doubles of
``fixtures.trt_runner_doubles`` (NOT TensorRT: the adapter and executor are doubles, the executor
keeps CudaExecutor's input contract and its "engine" runs the same fused graph on ONNX Runtime),
and the same images go through the pipelined path (det stacks, orientation and merged rec calls
concatenate into leased buffers, threads per stage) and the stock loop (the hook's scope).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fixtures.engines import ENGINE
from fixtures.trt_runner_doubles import ViewAdapterDouble, ViewExecutorDouble, make_runner
from PIL import Image

from paddleocr_trt.pipelined import last_run_stats
from paddleocr_trt.profiles import ShapeProfile
from paddleocr_trt.settings import ENV_PIPELINE
from paddleocr_trt.testing.results import result_differences

pytestmark = pytest.mark.slow
EXACT = {"box_tolerance": 0.0, "score_tolerance": 0.0}


@pytest.fixture(scope="module")
def ocr(cold_run, ort_env, ocr_models):
    from paddleocr import PaddleOCR

    import paddleocr_trt

    mp = pytest.MonkeyPatch()
    mp.setenv("PADDLEOCR_TRT_CACHE_DIR", ort_env["PADDLEOCR_TRT_CACHE_DIR"])
    mp.setenv("PADDLEOCR_TRT_ENGINE", "onnxruntime")
    mp.delenv(ENV_PIPELINE, raising=False)
    try:
        paddleocr_trt.activate()
        yield PaddleOCR(
            **ocr_models.paddleocr_kwargs(textline_orientation=True),
            **ENGINE,
            trt_engine="onnxruntime",
        )
    finally:
        mp.undo()


def _profiles(session: Any) -> list[dict[str, ShapeProfile]]:
    """One profile covering every shape the pipeline sends (so every call may lease)."""
    profile = {}
    for arg in session.get_inputs():
        rank = len(arg.shape)
        top = (48,) + (4000,) * (rank - 1)
        profile[arg.name] = ShapeProfile((1,) * rank, (1,) * rank, top)
    return [profile]


def _engines_on_doubles(monkeypatch, ocr) -> dict[str, ViewAdapterDouble]:
    """Each fused runner's engine becomes a TensorRTRunner over doubles (same fused graph)."""
    pipe = ocr.paddlex_pipeline._pipeline
    models = {
        "det": pipe.text_det_model,
        "rec": pipe.text_rec_model,
        "cls": pipe.textline_orientation_model,
    }
    fakes = {}
    for key, predictor in models.items():
        fused = predictor.runner.inner  # TimedRunner -> FusedEngineRunner
        onnx_path = fused.primary.source  # the fused graph ONNX Runtime runs (checked bytes)
        fake = ViewAdapterDouble(onnx_path, [])
        fake.profiles = _profiles(fake.session)
        trt = make_runner(
            monkeypatch, fake, ViewExecutorDouble, f"{key}-views", fallback=fused.host
        )
        monkeypatch.setattr(fused, "primary", trt)
        fakes[key] = fake
    return fakes


def _counts(fake: ViewAdapterDouble) -> tuple[int, int]:
    return (
        sum(e.zero_copy_inputs for e in fake.executors),
        sum(e.staged_inputs for e in fake.executors),
    )


@pytest.fixture(scope="module")
def pages(sample_images, tmp_path_factory) -> list[str]:
    """A document twice (equal-width rec chunks of two images: merged calls), two other
    samples, and three same-size PDF pages (det stacks them into one call)."""
    by_kind = {s.kind: s for s in sample_images}
    others = [str(s.path) for s in sample_images if s.kind not in ("large", "document")][:2]
    english = Image.open(sample_images[0].path).convert("RGB")
    sheets = []
    for shift in (0, 40, 80):
        sheet = Image.new("RGB", (420, 300), "white")
        sheet.paste(english.resize((380, 120)), (10, 20 + shift))
        sheets.append(sheet)
    pdf = tmp_path_factory.mktemp("views_pdf") / "three_pages.pdf"
    sheets[0].save(pdf, save_all=True, append_images=sheets[1:])
    doc = str(by_kind["document"].path)
    return [doc, doc, *others, str(pdf)]


def test_batches_go_into_engine_buffers_with_identical_results(ocr, pages, monkeypatch) -> None:
    reference = [r for page in pages for r in ocr.predict(page)]  # ONNX Runtime, one at a time
    assert sum(len(r["rec_texts"]) for r in reference) >= 10
    fakes = _engines_on_doubles(monkeypatch, ocr)

    runs = last_run_stats()["runs"]
    pipelined = ocr.predict(pages)
    assert last_run_stats()["runs"] == runs + 1, "the pipelined path did not run"
    assert not result_differences(reference, pipelined, **EXACT)
    det, rec, cls = (_counts(fakes[k]) for k in ("det", "rec", "cls"))
    assert det[0] > 0 and det[0] % 2 == 0 and det[1] == 0  # image + db_thresh, every call
    assert cls[0] > 0 and cls[1] == 0  # orientation calls concatenate into the buffer
    # rec: merged calls concatenate into it, single chunks are staged (which ones merge depends
    # on the stages' timing; the merge itself: test_pipelined.py); all went through the engine
    assert sum(rec) > 0

    monkeypatch.setenv(ENV_PIPELINE, "0")  # PaddleX's own loop, through the hook's scope
    before = {k: _counts(f) for k, f in fakes.items()}
    stock = [r for page in pages for r in ocr.predict(page)]
    assert last_run_stats()["runs"] == runs + 1
    assert not result_differences(reference, stock, **EXACT)
    for key, fake in fakes.items():
        zero, staged = _counts(fake)
        assert zero > before[key][0] and staged == before[key][1], key
    ex = fakes["rec"].executors[-1]
    assert np.shares_memory(ex.last_inputs[0], ex.buffers[0])
