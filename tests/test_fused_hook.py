"""The drop-in hook over fused graphs (issue 11): inside real PaddleOCR, on the warm ONNX Runtime
cache of ``fixtures.engines``, compared with plain PaddleOCR's results from the cold run.

What crosses the engine boundary, what happens when a fused graph fails validation, when the
engine fails at inference, when a caller reaches the runner without ``process``, and the stage
timers' split of engine and host time.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pytest
from fixtures.engines import ENGINE

from paddleocr_trt.backend.base import BaseRunner
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.testing.results import result_differences, result_fields

#: large_page costs ~10 s per pass on 2 cores and adds nothing these tests need.
SKIP = {"large_page"}


class RecordingRunner(BaseRunner):
    """Passes every call to the real engine and records what went in and came out."""

    def __init__(self, real: BaseRunner) -> None:
        super().__init__(real.name)
        self.real = real
        self.backend = real.backend
        self.input_names = getattr(real, "input_names", None)
        self.providers = getattr(real, "providers", None)  # where the engine computes
        self.calls: list[tuple[list[tuple], list[tuple]]] = []
        self.output_bytes = 0
        self.resident_kinds: set[str] = set()

    def infer(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        outputs = self.real.infer(inputs)
        self.calls.append(
            ([(x.dtype, x.shape) for x in inputs], [(o.dtype, o.shape) for o in outputs])
        )
        self.output_bytes += sum(o.nbytes for o in outputs)
        self.resident_kinds.update(
            type(o).__name__ for o in outputs if not isinstance(o, np.ndarray)
        )
        return outputs

    def close(self) -> None:
        self.real.close()


class FailingEngineDouble(BaseRunner):
    """Test double: the real engine for ``works_for`` calls, then an engine fault (what a CUDA
    error or an execution-provider crash looks like to the runner)."""

    def __init__(self, real: BaseRunner, works_for: int) -> None:
        super().__init__(real.name)
        self.real = real
        self.backend = real.backend
        self.input_names = getattr(real, "input_names", None)
        self.works_for = works_for
        self.calls = 0

    def infer(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        if self.calls > self.works_for:
            raise RuntimeError("FailingEngineDouble: simulated engine fault")
        return self.real.infer(inputs)

    def close(self) -> None:
        self.real.close()


def _predictors(ocr) -> dict[ModelType, object]:
    inner = ocr.paddlex_pipeline._pipeline
    return {
        ModelType.DETECTION: inner.text_det_model,
        ModelType.RECOGNITION: inner.text_rec_model,
        ModelType.CLASSIFICATION: inner.textline_orientation_model,
    }


def _fused_runner(predictor):
    from paddleocr_trt.integration.fused_runner import FusedEngineRunner

    runner = predictor.runner.inner  # TimedRunner -> FusedEngineRunner
    assert isinstance(runner, FusedEngineRunner), runner
    return runner


@pytest.fixture
def engine_ocr(engine_env, ocr_models):
    from paddleocr import PaddleOCR

    import paddleocr_trt

    paddleocr_trt.activate()
    ocr = PaddleOCR(**ocr_models.paddleocr_kwargs(textline_orientation=True), **ENGINE)
    assert [d.backend for d in paddleocr_trt.backend_report()[-3:]] == ["onnxruntime"] * 3
    yield ocr
    ocr.close()


def _check_same_as_plain(ocr, sample_images, cold_run) -> int:
    """Predict every sample (but SKIP) and compare with plain PaddleOCR's cold-run results."""
    plain = {r["input_path"]: r for r in cold_run["results"]["plain"]["single"]}
    lines = 0
    for sample in (s for s in sample_images if s.name not in SKIP):
        got = result_fields(ocr.predict(str(sample.path))[0])
        problems = result_differences([plain[str(sample.path)]], [got])
        assert not problems, "\n".join(problems)
        lines += len(got["rec_texts"])
    return lines


def _cls_size(model_dir) -> tuple[int, int]:
    """(H, W) the orientation model's inference.yml resizes to."""
    import yaml

    config = yaml.safe_load((model_dir / "inference.yml").read_text(encoding="utf-8"))
    for op in config["PreProcess"]["transform_ops"]:
        if "ResizeImage" in op:
            width, height = op["ResizeImage"]["size"]
            return height, width
    raise AssertionError("no ResizeImage in the orientation model's inference.yml")


@pytest.mark.slow
def test_engines_get_uint8_nhwc_and_return_ctc_indices(
    engine_ocr, ocr_models, sample_images, cold_run
) -> None:
    from paddleocr_trt.fusion.predictors import ADAPTED_ATTR
    from paddleocr_trt.integration.report import take_stage_timings

    predictors = _predictors(engine_ocr)
    recorders = {}
    for mtype, predictor in predictors.items():
        runner = _fused_runner(predictor)
        recorders[mtype] = runner.primary = RecordingRunner(runner.primary)
    take_stage_timings()
    assert _check_same_as_plain(engine_ocr, sample_images, cold_run) >= 10
    timings = {t.stage: t for t in take_stage_timings().values()}

    for mtype, predictor in predictors.items():
        runner = _fused_runner(predictor)
        assert runner.claimed and runner.failure is None, runner.failure
        assert getattr(predictor, ADAPTED_ATTR) is not None
        assert recorders[mtype].calls, mtype
    det_bitmap_bytes = det_map_bytes = 0
    for inputs, outputs in recorders[ModelType.DETECTION].calls:
        (dtype, shape), (thresh_dtype, thresh_shape) = inputs
        assert dtype == np.uint8 and len(shape) == 4 and shape[3] == 3, (dtype, shape)
        assert thresh_dtype == np.float32 and thresh_shape == (shape[0],)
        (map_dtype, map_shape), (bits_dtype, bits_shape) = outputs
        n, h, w, _c = shape
        assert map_dtype == np.float32 and map_shape == (n, 1, h, w)
        assert bits_dtype == np.uint8 and bits_shape == (n, 1, h, w // 8)
        det_bitmap_bytes += int(np.prod(bits_shape))
        det_map_bytes += int(np.prod(map_shape)) * 4
    for (dtype, shape), *_ in (c[0] for c in recorders[ModelType.CLASSIFICATION].calls):
        assert dtype == np.uint8 and shape[3] == 3, (dtype, shape)
        assert shape[1:3] == _cls_size(ocr_models.dir_for(ModelType.CLASSIFICATION))
    for inputs, outputs in recorders[ModelType.RECOGNITION].calls:
        ((in_dtype, in_shape),) = inputs
        (index_dtype, index_shape), (prob_dtype, prob_shape) = outputs
        assert in_dtype == np.float32 and in_shape[1] == 3
        assert np.issubdtype(index_dtype, np.integer) and prob_dtype == np.float32
        assert index_shape == prob_shape and len(index_shape) == 2
        assert index_shape[0] == in_shape[0] and abs(index_shape[1] - in_shape[3] / 8) <= 1

    # The timers saw the same calls and bytes, and split each stage into engine and host time.
    for stage, mtype in (("det", ModelType.DETECTION), ("orientation", ModelType.CLASSIFICATION),
                         ("rec", ModelType.RECOGNITION)):  # fmt: skip
        t = timings[stage]
        assert t.calls == len(recorders[mtype].calls), stage
        if stage != "det":
            assert t.output_bytes == recorders[mtype].output_bytes, stage
        assert t.process_calls >= 1 and t.engine_seconds > 0
        assert t.host_seconds is not None and t.host_seconds > 0
        assert t.process_seconds >= t.engine_seconds
    # det: the packed bitmap, plus 8 bytes per box score summed inside ONNX Runtime (the map
    # stays there) and one window per post-processor that checks the first score the stock
    # way: a small fraction of the map.
    assert recorders[ModelType.DETECTION].resident_kinds == {"OrtResidentMap"}
    sums = timings["det"].output_bytes - det_bitmap_bytes
    assert 0 < sums < det_map_bytes / 40, (sums, det_map_bytes)
    # rec returns (int32 index, float32 prob) per time step: 8 bytes, not 6625 * 4.
    rec_steps = sum(int(np.prod(c[1][0][1])) for c in recorders[ModelType.RECOGNITION].calls)
    assert timings["rec"].output_bytes == rec_steps * 8


@pytest.mark.slow
def test_engine_failing_at_inference_keeps_results(
    engine_ocr, sample_images, cold_run, caplog: pytest.LogCaptureFixture
) -> None:
    doubles = {}
    for mtype, predictor in _predictors(engine_ocr).items():
        runner = _fused_runner(predictor)
        # det and orientation fail at once (the fallback normalises their uint8 batches on the
        # host); rec after two batches (the adapted decoder then gets Paddle's softmax).
        works_for = 2 if mtype is ModelType.RECOGNITION else 0
        doubles[mtype] = runner.primary = FailingEngineDouble(runner.primary, works_for)
    with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
        _check_same_as_plain(engine_ocr, sample_images, cold_run)
    failed = [r.getMessage() for r in caplog.records if "failed at inference" in r.getMessage()]
    assert len(failed) == 3, failed  # one warning per model, not per call
    for mtype, predictor in _predictors(engine_ocr).items():
        runner = _fused_runner(predictor)
        assert runner.backend == "paddle" and "simulated engine fault" in runner.failure
        assert doubles[mtype].calls == doubles[mtype].works_for + 1, mtype


@pytest.mark.slow
def test_runner_called_without_process_goes_native(
    engine_ocr, ocr_models, sample_images, cold_run, caplog: pytest.LogCaptureFixture
) -> None:
    """A caller that feeds the runner stock float input (no adapted ``process``) gets native
    Paddle's answer, and the predictor later still reads as plain PaddleOCR does."""
    from paddleocr_trt.backend.paddle.runner import PaddleInferenceRunner
    from paddleocr_trt.comparator.inputs import build_validation_inputs

    det = _predictors(engine_ocr)[ModelType.DETECTION]
    (x,) = build_validation_inputs(
        ModelType.DETECTION, [sample_images[0].path], model_dir=ocr_models.det, shapes=(320,)
    )
    with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
        (got,) = det.runner(x=[x])
    with PaddleInferenceRunner(ocr_models.det, device="cpu") as paddle:
        (want,) = paddle.infer([x])
    assert _fused_runner(det).host.native._runner is not None  # Paddle answered
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)  # (its own thread settings)
    assert any("was not adapted" in r.getMessage() for r in caplog.records), caplog.text
    _check_same_as_plain(engine_ocr, sample_images, cold_run)
    assert _fused_runner(det).backend == "paddle"


@pytest.mark.slow
def test_fused_graph_failing_validation_is_not_used(
    engine_env, ocr_models, sample_images, cold_run, monkeypatch, caplog, tmp_path
) -> None:
    """A wrongly fused det graph (normalised with the wrong constants) fails validation against
    the validated graph: nothing is cached, det runs on native Paddle, results stay plain."""
    import shutil

    from paddleocr import PaddleOCR

    import paddleocr_trt
    from paddleocr_trt import engine_graph
    from paddleocr_trt.backend.onnx.fuse import prepend_uint8_normalize
    from paddleocr_trt.backend.onnx.fuse_db import append_db_bitmap
    from paddleocr_trt.fusion import graphs

    real_fuse = graphs.fuse_model

    def wrongly_fused(model_type, model, model_dir, **kw):
        if ModelType.parse(model_type) is ModelType.DETECTION:
            wrong = prepend_uint8_normalize(model, scale=1 / 255, mean=[0.5] * 3, std=[0.5] * 3)
            return append_db_bitmap(wrong)
        return real_fuse(model_type, model, model_dir, **kw)

    monkeypatch.setattr(graphs, "fuse_model", wrongly_fused)
    # a new graph recipe: fresh graph stage keys, so fresh engine keys
    monkeypatch.setattr(engine_graph, "FUSED_GRAPH", "fused-wrong-test")
    # A copy of the warm cache: ONNX steps hit, the session's cache stays as other tests expect.
    shutil.copytree(engine_env["PADDLEOCR_TRT_CACHE_DIR"], tmp_path / "cache", symlinks=True)
    monkeypatch.setenv("PADDLEOCR_TRT_CACHE_DIR", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "onnxruntime"
    entries_before = sorted(p.name for p in cache.iterdir())
    paddleocr_trt.activate()
    with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
        ocr = PaddleOCR(**ocr_models.paddleocr_kwargs(textline_orientation=True), **ENGINE)
    by_model = {d.model_name: d for d in paddleocr_trt.backend_report()[-3:]}
    assert by_model["PP-OCRv4_mobile_det"].backend == "paddle", by_model
    assert "validation" in by_model["PP-OCRv4_mobile_det"].reason.lower()
    assert {by_model[m].backend for m in by_model if m != "PP-OCRv4_mobile_det"} == {"onnxruntime"}
    warned = [r.getMessage() for r in caplog.records if "running native Paddle" in r.getMessage()]
    assert len(warned) == 1 and "PP-OCRv4_mobile_det" in warned[0], warned
    added = sorted(set(p.name for p in cache.iterdir()) - set(entries_before))
    assert len(added) == 2, added  # rec and orientation under the new key; det not cached
    _check_same_as_plain(ocr, sample_images, cold_run)
    ocr.close()


@pytest.mark.slow
def test_demo_json_splits_host_and_engine_time(engine_env, sample_images, tmp_path) -> None:
    images = [str(s.path) for s in sample_images if s.name in ("english_document", "rotated_180")]
    proc = subprocess.run(
        [sys.executable, "-m", "paddleocr_trt.cli", "demo", *images, "--device", "cpu",
         "--engine", "onnxruntime", "--json", "--work-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=engine_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert len(report["images"]) == 2, report
    assert all("fused graph" in d["reason"] for d in report["backends"].values()), report
    for image in report["images"]:
        stages = image["stages"]
        assert set(stages) == {"det", "orientation", "rec"}, stages
        for stage in stages.values():
            assert stage["engine_ms"] > 0 and stage["host_ms"] >= 0 and stage["calls"] >= 1
        assert stages["rec"]["engine_output_bytes"] < 10_000_000
        total = image["seconds"]["total"] * 1000
        assert sum(s["engine_ms"] + s["host_ms"] for s in stages.values()) <= total
