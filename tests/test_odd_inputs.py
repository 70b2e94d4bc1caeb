"""Whatever plain PaddleOCR accepts, the drop-in accepts with the same result; what plain
PaddleOCR rejects, the drop-in rejects with the same exception type (issue 19.5).

One session-wide set of real PaddleOCR 3.7 pipelines on the real PP-OCRv4 models: plain
(native Paddle), and two drop-ins on our ONNX Runtime engine (fused graphs: uint8 NHWC det and
orientation inputs, CTC argmax rec output): ``trt_engine="onnxruntime"``, and
``use_tensorrt=True`` falling from TensorRT to ONNX Runtime. Every row of
``fixtures/odd_inputs.CASES`` goes alone through the first; a handful of representative rows
through the second (the two differ only in how the engine is chosen). The pipelined
multi-image path: rows that are lists themselves, and one mixed list of every row plain
accepts, in one ``predict(list)`` call per drop-in. Results are compared field by field
(texts and angles exact, boxes within a pixel, scores within 1e-3: the engine is ONNX Runtime,
not Paddle; inputs the fused graph does not take are answered by PaddleX's stock steps and
native Paddle, the code plain runs), exceptions by type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures.engines import ENGINE, PLAIN
from fixtures.odd_inputs import ALL, CASES, LINES, Case, Files, write_files

from paddleocr_trt.pipelined import last_run_stats
from paddleocr_trt.settings import ENV_CACHE_DIR, ENV_ENGINE, ENV_PIPELINE
from paddleocr_trt.testing.results import result_differences, result_fields

pytestmark = pytest.mark.slow
#: the engine (ONNX Runtime) is not bit-identical to Paddle: boxes within a pixel, scores 1e-3,
#: texts and angles exact (``result_differences``' defaults, as every comparison with stock)
CLOSE = {"box_tolerance": 1.0, "score_tolerance": 1e-3}
DROP_INS = {
    # TensorRT first (not installed or no GPU here), then our ONNX Runtime engine
    "use_tensorrt": ({**ENGINE}, "tensorrt,onnxruntime"),
    "trt_engine": ({**PLAIN, "trt_engine": "onnxruntime"}, None),
}


@pytest.fixture(scope="session")
def odd_files(sample_images_by_name, tmp_path_factory: pytest.TempPathFactory) -> Files:
    return write_files(
        tmp_path_factory.mktemp("odd_inputs"),
        sample_images_by_name["english_document"].path,
        sample_images_by_name["tiny_word"].path,
    )


@pytest.fixture(scope="session")
def pipelines(ocr_models, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """plain + the drop-ins; the first drop-in converts and validates the three models in this
    process, the second loads them from that cache."""
    from paddleocr import PaddleOCR

    import paddleocr_trt

    paddleocr_trt.activate()
    mp = pytest.MonkeyPatch()
    mp.setenv(ENV_CACHE_DIR, str(tmp_path_factory.mktemp("odd_inputs_cache")))
    mp.delenv(ENV_PIPELINE, raising=False)
    models = ocr_models.paddleocr_kwargs(textline_orientation=True)
    try:
        made = {"plain": PaddleOCR(**models, **PLAIN)}
        for name, (kwargs, env_engines) in DROP_INS.items():
            if env_engines:
                mp.setenv(ENV_ENGINE, env_engines)
            else:
                mp.delenv(ENV_ENGINE, raising=False)
            made[name] = PaddleOCR(**models, **kwargs)
        mp.delenv(ENV_ENGINE, raising=False)
        yield made
    finally:
        mp.undo()


def _predictors(ocr) -> dict[str, Any]:
    inner = ocr.paddlex_pipeline._pipeline
    return {
        "det": inner.text_det_model,
        "rec": inner.text_rec_model,
        "cls": inner.textline_orientation_model,
    }


def _outcome(ocr, value: Any) -> list[dict] | type:
    """Results as plain JSON fields, or the exception's type."""
    try:
        return [result_fields(r) for r in ocr.predict(value)]
    except Exception as exc:
        return type(exc)


_plain_outcomes: dict[str, Any] = {}


def _plain(pipelines, case: Case, files: Files) -> Any:
    if case.id not in _plain_outcomes:
        _plain_outcomes[case.id] = _outcome(pipelines["plain"], case.make(files))
    return _plain_outcomes[case.id]


#: the page's bottom MCU rows are undefined in a JPEG without its end marker; filling them
#: five ways (noise, zeros, 255, stripes, gray) moved plain's boxes by up to 2 px across the
#: whole page and changed spaces and case in its texts (``Paymentisduewithin thirtydays`` /
#: ``Payment is due within thirty days``), but never the number of lines or their angles
EOI_BOX_TOLERANCE = 3.0


def _assert_same(case: Case, expected: Any, got: Any) -> None:
    if isinstance(expected, type) or isinstance(got, type):
        assert got is expected, f"plain: {expected}, drop-in: {got}"
        return
    if case.compare == ALL:
        assert not result_differences(expected, got, **CLOSE)
        return
    # the shape of the answer is defined whatever the undecoded rows hold
    assert len(got) == len(expected)
    assert [sorted(r) for r in got] == [sorted(r) for r in expected]
    assert [r["input_path"] for r in got] == [r["input_path"] for r in expected]
    if case.compare == LINES:  # the number of lines, their angles, their boxes (loosely)
        for exp, act in zip(expected, got, strict=True):
            assert exp["rec_texts"], "plain read no line: nothing would be compared"
            assert len(act["rec_texts"]) == len(exp["rec_texts"])
            assert act["textline_orientation_angles"] == exp["textline_orientation_angles"]
            for name in ("dt_polys", "rec_boxes"):
                diff = np.abs(np.asarray(exp[name], float) - np.asarray(act[name], float)).max()
                assert diff <= EOI_BOX_TOLERANCE, (name, diff)


def test_the_drop_ins_run_our_engine(pipelines) -> None:
    """The comparison below is with our engine: every model of each drop-in is on it."""
    from paddleocr_trt.integration.fused_runner import FusedEngineRunner

    for name in DROP_INS:
        for kind, predictor in _predictors(pipelines[name]).items():
            runner = predictor.runner.inner  # TimedRunner -> FusedEngineRunner
            assert isinstance(runner, FusedEngineRunner), (name, kind, runner)
            assert runner.backend == "onnxruntime", (name, kind, runner.failure)


#: rows the second drop-in also runs: the fast path, each kind of stock-path input, a file,
#: a PDF, a list mixing stock and fast inputs (multi-image path) and two rejections
REPRESENTATIVE = (
    "uint8",
    "float32_0_1",
    "gray_2d",
    "hw4_bgra",
    "png_pathlib",
    "pdf_three_pages",
    "list_float_and_uint8",
    "missing_file",
    "none",
)
RUNS = [(case, "trt_engine") for case in CASES]
RUNS += [(case, "use_tensorrt") for case in CASES if case.id in REPRESENTATIVE]


@pytest.mark.parametrize(
    ("case", "drop_in"), RUNS, ids=[f"{case.id}-{drop_in}" for case, drop_in in RUNS]
)
def test_same_outcome_as_plain(pipelines, odd_files, case: Case, drop_in: str) -> None:
    expected = _plain(pipelines, case, odd_files)
    runs = last_run_stats()["runs"]
    got = _outcome(pipelines[drop_in], case.make(odd_files))
    value = case.make(odd_files)  # a list of two or more images takes the pipelined path
    if isinstance(value, list | tuple) and len(value) > 1 and not isinstance(got, type):
        assert last_run_stats()["runs"] == runs + 1, "the pipelined path did not run"
    _assert_same(case, expected, got)


#: left out of the mixed list: lists and directories (a list item is one image source), the
#: rows with undefined pixels, and the slowest pages (each is already compared alone)
NOT_MIXED = ("tall_4100x48", "wide_page_x3", "uint16_word")


def test_a_mixed_list_takes_the_pipelined_path(pipelines, odd_files) -> None:
    """Every single input plain accepts, in one ``predict(list)``: the pipelined path runs,
    the results match plain's item by item (the other drop-in takes this path with the
    representative ``list_*`` rows)."""
    mixed = []
    for case in CASES:
        value = case.make(odd_files)
        if case.compare != ALL or case.id in NOT_MIXED or isinstance(value, list | tuple):
            continue
        if isinstance(value, str) and Path(value).is_dir():
            continue
        if isinstance(_plain(pipelines, case, odd_files), list):
            mixed.append(case)
    assert len(mixed) >= 20, [c.id for c in mixed]
    values = [case.make(odd_files) for case in mixed]
    expected = _outcome(pipelines["plain"], values)
    assert isinstance(expected, list), f"plain refused the mixed list: {expected}"
    runs = last_run_stats()["runs"]
    got = _outcome(pipelines["trt_engine"], values)
    assert last_run_stats()["runs"] == runs + 1, "the pipelined path did not run"
    assert not isinstance(got, type), f"the drop-in raised {got}"
    assert not result_differences(expected, got, **CLOSE)


def test_odd_inputs_take_the_stock_path_and_the_engine_stays(pipelines, odd_files) -> None:
    """A float32 page is answered by PaddleX's stock steps + native Paddle (det, orientation);
    the uint8 page right after it is the engine's again."""
    predictors = _predictors(pipelines["trt_engine"])
    det = predictors["det"].runner.inner
    before = det.stock_inputs
    float_page = odd_files.bgr.astype(np.float32)
    assert pipelines["trt_engine"].predict(float_page)[0]["rec_texts"]
    assert det.stock_inputs == before + 1
    assert det.failure is None and det.backend == "onnxruntime"
    pipelines["trt_engine"].predict(odd_files.bgr)
    assert det.stock_inputs == before + 1
