"""Whatever plain PaddleOCR accepts, the drop-in accepts with the same result; what plain
PaddleOCR rejects, the drop-in rejects with the same exception type (issue 19.5).

One session-wide set of real PaddleOCR 3.7 pipelines on the real PP-OCRv4 models: plain
(native Paddle), and two drop-ins on our ONNX Runtime engine (fused graphs: uint8 NHWC det and
orientation inputs, CTC argmax rec output): ``use_tensorrt=True`` falling from TensorRT to ONNX
Runtime, and ``trt_engine="onnxruntime"``. Every row of ``fixtures/odd_inputs.CASES`` goes
through each, alone (``single``) and as a two-image list with a small word image (``list``,
which takes the pipelined multi-image path); results are compared field by field (texts and
angles exact, boxes within a pixel, scores within 1e-3: the engine is ONNX Runtime, not Paddle;
inputs the fused graph does not take are answered by PaddleX's stock steps and native Paddle,
the code plain runs), exceptions by type.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fixtures.engines import ENGINE, PLAIN
from fixtures.odd_inputs import CASES, Case, Files, write_files

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


def _input(case: Case, mode: str, files: Files) -> Any:
    value = case.make(files)
    return value if mode == "single" else [value, files.word]


def _outcome(ocr, value: Any) -> list[dict] | type:
    """Results as plain JSON fields, or the exception's type."""
    try:
        return [result_fields(r) for r in ocr.predict(value)]
    except Exception as exc:
        return type(exc)


_plain_outcomes: dict[tuple[str, str], Any] = {}


def _plain(pipelines, case: Case, mode: str, files: Files) -> Any:
    key = (case.id, mode)
    if key not in _plain_outcomes:
        _plain_outcomes[key] = _outcome(pipelines["plain"], _input(case, mode, files))
    return _plain_outcomes[key]


def test_the_drop_ins_run_our_engine(pipelines) -> None:
    """The comparison below is with our engine: every model of each drop-in is on it."""
    from paddleocr_trt.integration.fused_runner import FusedEngineRunner

    for name in DROP_INS:
        for kind, predictor in _predictors(pipelines[name]).items():
            runner = predictor.runner.inner  # TimedRunner -> FusedEngineRunner
            assert isinstance(runner, FusedEngineRunner), (name, kind, runner)
            assert runner.backend == "onnxruntime", (name, kind, runner.failure)


@pytest.mark.parametrize("mode", ["single", "list"])
@pytest.mark.parametrize("drop_in", list(DROP_INS))
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_same_outcome_as_plain(pipelines, odd_files, case: Case, drop_in: str, mode: str) -> None:
    if mode == "list" and isinstance(case.make(odd_files), (list, tuple)):
        pytest.skip("already a list: the single run took the multi-image path")
    expected = _plain(pipelines, case, mode, odd_files)
    runs = last_run_stats()["runs"]
    got = _outcome(pipelines[drop_in], _input(case, mode, odd_files))
    if isinstance(expected, type) or isinstance(got, type):
        assert got is expected, f"plain: {expected}, drop-in: {got}"
        return
    if mode == "list":
        assert last_run_stats()["runs"] == runs + 1, "the pipelined path did not run"
    if case.exact:
        assert not result_differences(expected, got, **CLOSE)
    else:  # OpenCV leaves the rows it never decoded uninitialised: compare the answer's shape
        assert len(got) == len(expected)
        assert [sorted(r) for r in got] == [sorted(r) for r in expected]


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
