"""The pipelined multi-image path against stock PaddleOCR on the same ONNX Runtime engines.

One real PaddleOCR instance on ONNX Runtime engines; "stock" is the same instance with
``PADDLEOCR_TRT_PIPELINE=0`` (PaddleX's own loop). Results must be identical: tolerance zero.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from fixtures.engines import ENGINE, PLAIN
from PIL import Image

from paddleocr_trt.backend.base import BaseRunner
from paddleocr_trt.integration.fallback import engine_runner
from paddleocr_trt.pipelined import last_run_stats
from paddleocr_trt.settings import ENV_PIPELINE
from paddleocr_trt.testing.results import result_differences

pytestmark = pytest.mark.slow
EXACT = {"box_tolerance": 0.0, "score_tolerance": 0.0}


@pytest.fixture(scope="module")
def engine_cache(cold_run, ort_env) -> str:
    """The ONNX Runtime graphs the engine tests converted and cached (shared, read-only)."""
    return ort_env["PADDLEOCR_TRT_CACHE_DIR"]


@pytest.fixture
def env(engine_cache, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PADDLEOCR_TRT_CACHE_DIR", engine_cache)
    monkeypatch.setenv("PADDLEOCR_TRT_ENGINE", "onnxruntime")
    monkeypatch.delenv(ENV_PIPELINE, raising=False)
    return monkeypatch


def _make_ocr(ocr_models, **extra):
    from paddleocr import PaddleOCR

    import paddleocr_trt

    paddleocr_trt.activate()
    return PaddleOCR(**ocr_models.paddleocr_kwargs(textline_orientation=True), **extra)


@pytest.fixture(scope="module")
def ocr(engine_cache, ocr_models):
    mp = pytest.MonkeyPatch()
    mp.setenv("PADDLEOCR_TRT_CACHE_DIR", engine_cache)
    try:
        yield _make_ocr(ocr_models, **ENGINE, trt_engine="onnxruntime")
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def images(sample_images, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Every sample but the 3200x1400 page (its det alone costs seconds per run here), plus a
    page with a flipped line above upright ones: stock gives every crop of an orientation chunk
    the angle of its first crop (paddlex 3.7.2), which the pipelined path must reproduce."""
    by_kind = {s.kind: s for s in sample_images}
    upright = Image.open(by_kind["document"].path).convert("RGB")
    flipped = Image.open(by_kind["rotated"].path).convert("RGB")
    mixed = Image.new("RGB", (max(upright.width, flipped.width), upright.height + flipped.height))
    mixed.paste(flipped, (0, 0))
    mixed.paste(upright, (0, flipped.height))
    path = tmp_path_factory.mktemp("mixed") / "mixed_orientation.png"
    mixed.save(path)
    return [str(s.path) for s in sample_images if s.kind != "large"] + [str(path)]


def _stock(ocr, env, *args, **kwargs):
    env.setenv(ENV_PIPELINE, "0")
    runs = last_run_stats()["runs"]
    try:
        return ocr.predict(*args, **kwargs)
    finally:
        env.delenv(ENV_PIPELINE)
        assert last_run_stats()["runs"] == runs, "the switch did not keep the stock path"


def _pipelined(ocr, *args, **kwargs):
    runs = last_run_stats()["runs"]
    results = ocr.predict(*args, **kwargs)
    stats = last_run_stats()
    assert stats["runs"] == runs + 1, "the pipelined path did not run"
    assert stats["images"] == len(results)
    return results


def test_list_identical_to_stock(ocr, env, images) -> None:
    stock = _stock(ocr, env, images)
    assert any(r["rec_texts"] for r in stock)
    assert not result_differences(stock, _pipelined(ocr, images), **EXACT)


def test_order_kept_with_repeats_and_shuffles(ocr, env, images) -> None:
    order = [images[3], images[0], images[3], images[5], images[1], images[0]]
    stock = _stock(ocr, env, order)
    pipelined = _pipelined(ocr, order)
    assert [r["input_path"] for r in pipelined] == order
    assert not result_differences(stock, pipelined, **EXACT)


def test_directory_and_word_boxes_identical_to_stock(ocr, env, images, tmp_path: Path) -> None:
    for path in images[:3]:
        (tmp_path / Path(path).name).write_bytes(Path(path).read_bytes())
    assert not result_differences(
        _stock(ocr, env, str(tmp_path)), _pipelined(ocr, str(tmp_path)), **EXACT
    )
    some = [images[0], images[2], images[-1]]
    stock = _stock(ocr, env, some, return_word_box=True)
    pipelined = _pipelined(ocr, some, return_word_box=True)
    assert all(r["text_word"] for r in pipelined if r["rec_texts"])
    assert not result_differences(stock, pipelined, **EXACT)


def test_pdf_pages_identical_to_stock(ocr, env, sample_images, tmp_path: Path) -> None:
    """PDF pages (same size: det may stack them) come out as stock's, page indices too."""
    english = Image.open(sample_images[0].path).convert("RGB")
    page = Image.new("RGB", (420, 300), "white")
    pages = []
    for shift in (0, 40, 80):
        p = page.copy()
        p.paste(english.resize((380, 120)), (10, 20 + shift))
        pages.append(p)
    pdf = tmp_path / "three_pages.pdf"
    pages[0].save(pdf, save_all=True, append_images=pages[1:])
    stock = _stock(ocr, env, str(pdf))
    pipelined = _pipelined(ocr, str(pdf))
    assert [r["page_index"] for r in pipelined] == [0, 1, 2]
    assert not result_differences(stock, pipelined, **EXACT)


class _CallShapes:
    """Records the input shapes of each call to a real runner (the engine itself runs)."""

    def __init__(self, inner) -> None:
        self.inner, self.shapes = inner, []

    def __call__(self, x, **kwargs):
        self.shapes.append(tuple(x[0].shape))
        return self.inner(x=x, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("policy", ["gpu", "cpu"])
def test_rec_calls_follow_the_device_call_sizes(ocr, env, images, policy: str, request) -> None:
    """The merge and the cut, step by step on real components (threads make the path
    timing-dependent): GPU call sizes share calls between equal-width chunks of several images;
    CPU call sizes (what these CPU engines get by default) cut calls to rows x width <= the
    column budget, a chunk may span calls; either way each image decodes as stock."""
    from paddleocr_trt.pipelined.call_sizes import CPU_CALLS, GPU_CALLS
    from paddleocr_trt.pipelined.steps import OCRSteps, PageItem

    pipe = ocr.paddlex_pipeline._pipeline
    settings = {
        "model_settings": {"use_doc_preprocessor": False, "use_textline_orientation": True},
        "text_rec_score_thresh": pipe.text_rec_score_thresh,
        "return_word_box": False,
    }
    steps = OCRSteps(pipe, pipe.get_text_det_params(), settings)
    request.addfinalizer(steps.close)
    assert steps.calls == CPU_CALLS, "ONNX Runtime CPU engines get the CPU call sizes"
    # PaddleOCR's cpu_threads (8 by default) capped at the cores: that many one-thread lanes
    assert steps.lanes == min(8, os.cpu_count() or 1)
    if policy == "gpu":
        steps.calls = GPU_CALLS
    paths = [images[0], images[0], images[6]]
    items = []
    for index, path in enumerate(paths):
        item = PageItem(index, path, None, image=pipe.img_reader([path])[0])
        steps.det_preprocess(item)
        items.append(item)
    steps.det_engine(items)
    for item in items:
        steps.det_postprocess(item)
    steps.orientation(items)
    for item in items:
        steps.rec_preprocess(item)
    chunks = [c for it in items for c in it.chunks]
    widths = {c.width_key for c in chunks}
    rows = [c.rows for c in chunks]
    recorder = _CallShapes(pipe.text_rec_model.runner)
    pipe.text_rec_model.runner = recorder
    try:
        steps.rec_engine(items)
    finally:
        pipe.text_rec_model.runner = recorder.inner
    assert steps.stats["cls_calls"] == 1
    assert steps.stats["rec_rows"] == sum(rows)
    assert len(recorder.shapes) == steps.stats["rec_calls"]
    if policy == "gpu":  # images[0] twice: same-shape det inputs stacked, chunks merged
        assert steps.stats["det_calls"] < 3
        assert steps.stats["rec_calls"] == len(widths) < len(chunks)
    else:
        assert steps.stats["det_calls"] == 3
        budget = CPU_CALLS.rec_columns
        assert all(s[0] == 1 or s[0] * max(s[1:]) <= budget for s in recorder.shapes)
        assert max(rows) * min(max(s[1:]) for s in recorder.shapes) > budget
        assert steps.stats["rec_calls"] > len(chunks), "no chunk was cut into several calls"
        if steps.lanes > 1:  # the calls ran in one-thread lanes, on one-thread sessions
            assert engine_runner(pipe.text_rec_model.runner)._lane_session is not None
    stock = _stock(ocr, env, paths)
    for item, expected in zip(items, stock, strict=True):
        decoded = steps.rec_decode(item)
        assert [r["rec_text"] for r in decoded] == expected["rec_texts"]
        kept = [r["rec_score"] for r in decoded if r["rec_score"] >= pipe.text_rec_score_thresh]
        assert kept == list(expected["rec_scores"])


def test_a_camera_sized_page_runs_det_alone_on_every_lane(ocr, env, sample_images) -> None:
    """A det input of >= ``WIDE_DET_VALUES`` (the 3200x1400 page: 13.4 M values) runs alone with
    the engine's full threads (``det_wide_calls``); the smaller pages beside it still share the
    lanes; every field identical to stock."""
    from paddleocr_trt.pipelined.call_sizes import CPU_CALLS

    by_kind = {s.kind: str(s.path) for s in sample_images}
    paths = [by_kind["document"], by_kind["large"], by_kind["rotated"], by_kind["cjk"]]
    results = _pipelined(ocr, paths)
    stats = last_run_stats()
    assert CPU_CALLS.wide_det_values <= 3200 * 1400 * 3 < 2 * CPU_CALLS.wide_det_values
    assert stats["det_wide_calls"] == 1, stats
    assert stats["det_calls"] == 4
    assert not result_differences(_stock(ocr, env, paths), results, **EXACT)


def test_stock_path_when_off_native_or_single(ocr, env, ocr_models, images) -> None:
    runs = last_run_stats()["runs"]
    env.setenv(ENV_PIPELINE, "0")
    ocr.predict(images[:2])
    env.delenv(ENV_PIPELINE)
    ocr.predict(images[0])  # one image: nothing to overlap
    _make_ocr(ocr_models, **ENGINE, trt_engine="onnxruntime", trt_pipeline=False).predict(
        images[:2]
    )
    _make_ocr(ocr_models, **PLAIN).predict(images[:2])  # native Paddle: stock, untouched
    assert last_run_stats()["runs"] == runs
    with pytest.raises(ValueError, match="trt_pipeline"):
        _make_ocr(ocr_models, **ENGINE, trt_pipeline="no")


def test_errors_raised_in_order_and_workers_stop(ocr, env, images, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.png")
    batch = [images[0], missing, images[1]]

    def outcome(pipelined: bool):
        got, env_value = [], None if pipelined else "0"
        if env_value:
            env.setenv(ENV_PIPELINE, env_value)
        try:
            for result in ocr.predict_iter(batch):
                got.append(result["rec_texts"])
        except Exception as exc:
            return got, type(exc), str(exc)
        finally:
            env.delenv(ENV_PIPELINE, raising=False)
        return got, None, None

    expected = outcome(False)
    assert expected[1] is not None and len(expected[0]) == 1
    assert outcome(True) == expected
    iterator = ocr.predict_iter(images)  # abandoned after one result
    next(iterator)
    iterator.close()
    alive = [t.name for t in threading.enumerate() if t.name.startswith("pipelined-")]
    assert alive == []


def test_concurrent_callers_each_with_their_own_instance(env, ocr, ocr_models, images) -> None:
    some = images[:4]
    expected = _stock(ocr, env, some)
    others = [ocr, _make_ocr(ocr_models, **ENGINE, trt_engine="onnxruntime")]
    outcomes: list = [None, None]

    def work(slot: int) -> None:
        try:
            outcomes[slot] = [others[slot].predict(some)]
        except Exception as exc:  # reported below with its type
            outcomes[slot] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    for outcome in outcomes:
        assert isinstance(outcome, list), outcome
        for results in outcome:
            assert not result_differences(expected, results, **EXACT)


class FailingEngineDouble(BaseRunner):
    """Test double: an engine that fails at inference as a CUDA fault would (no real engine
    here fails on demand); it drives the fallback's control flow, the fallback is real Paddle."""

    backend = "onnxruntime"

    def infer(self, inputs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered (double)")


def test_guarded_runner_switches_once_under_concurrent_failures(ocr_models) -> None:
    """Many threads hit a failing engine at once: one native runner is built, one warning."""
    from paddleocr_trt.backend.paddle.runner import PaddleInferenceRunner
    from paddleocr_trt.integration.fallback import GuardedRunner, LazyNativeRunner

    built: list = []

    def factory():
        runner = PaddleInferenceRunner(ocr_models.cls, device="cpu")
        built.append(runner)
        return runner

    guarded = GuardedRunner(
        FailingEngineDouble("cls-double"), LazyNativeRunner("paddle:cls", factory), "cls"
    )
    batch = np.random.default_rng(1).random((2, 3, 80, 160), dtype=np.float32)
    outputs: list = []
    threads = [threading.Thread(target=lambda: outputs.append(guarded([batch]))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(built) == 1 and len(outputs) == 6
    expected = PaddleInferenceRunner(ocr_models.cls, device="cpu").infer([batch])
    for out in outputs:
        np.testing.assert_array_equal(out[0], expected[0])
    assert 1 <= guarded.engine_failures <= 6 and guarded.backend == "paddle"
    assert "illegal memory access" in (guarded.failure or "")
    guarded.close()
