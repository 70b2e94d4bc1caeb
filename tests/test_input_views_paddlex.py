"""Real PaddleX predictors, adapted by our hook, stacking their batches straight into the input
buffers of a TensorRTRunner: the same results as stock PaddleX, no host copy in between.

Not TensorRT: the runner's adapter and executor are the named doubles of
``fixtures.trt_runner_doubles`` (the executor keeps CudaExecutor's input contract: views of its
own buffers are used in place, anything else is copied in). Everything else is real: PaddleX's
det, rec and text-line orientation predictors and their pre/post-processing, our predictor hook,
fused graphs and producers, ``FusedEngineRunner`` and its host-normalising fallback; the
"engine" runs the real fused graphs on ONNX Runtime, the stock side the plain graphs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from fixtures.trt_runner_doubles import ViewAdapterDouble, ViewExecutorDouble, make_runner

from paddleocr_trt.comparator.inputs import _crops
from paddleocr_trt.engines.onnxruntime.runner import OnnxRuntimeRunner
from paddleocr_trt.fusion import fuse_model
from paddleocr_trt.fusion.predictors import ADAPTED_ATTR
from paddleocr_trt.integration import predictor_hook
from paddleocr_trt.integration.fallback import LazyNativeRunner
from paddleocr_trt.integration.fused_runner import FusedEngineRunner, HostNormalizingNative
from paddleocr_trt.integration.report import TimedRunner
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.profiles import ShapeProfile
from paddleocr_trt.testing.models import CLS_MODEL_NAME, DET_MODEL_NAME, REC_MODEL_NAME

_NAMES = {
    ModelType.DETECTION: DET_MODEL_NAME,
    ModelType.RECOGNITION: REC_MODEL_NAME,
    ModelType.CLASSIFICATION: CLS_MODEL_NAME,
}
#: (min, opt, max) of each model's image input; batch is the first dimension
_IMAGE_PROFILES = {
    ModelType.DETECTION: ((1, 32, 32, 3), (1, 960, 960, 3), (1, 4000, 4000, 3)),
    ModelType.RECOGNITION: ((1, 3, 48, 32), (6, 3, 48, 320), (6, 3, 48, 1600)),
    ModelType.CLASSIFICATION: ((1, 16, 16, 3), (4, 80, 160, 3), (8, 256, 256, 3)),
}


@pytest.fixture(scope="module")
def fused_paths(onnx_models, ocr_models, tmp_path_factory) -> dict[ModelType, Path]:
    out = tmp_path_factory.mktemp("fused_views")
    paths = {}
    for mtype in ModelType:
        paths[mtype] = out / f"{mtype.value}.fused.onnx"
        source = onnx.load(str(onnx_models[mtype].onnx_path))
        onnx.save(fuse_model(mtype, source, ocr_models.dir_for(mtype)), str(paths[mtype]))
    return paths


@pytest.fixture(scope="module")
def crops(sample_images) -> list[np.ndarray]:
    found = [
        c for c in _crops([s.path for s in sample_images], None) if c.shape[1] < 20 * c.shape[0]
    ]
    return sorted(found, key=lambda c: c.shape[1] / c.shape[0])


def _profiles(fake_session: Any, mtype: ModelType) -> list[dict[str, ShapeProfile]]:
    image = ShapeProfile(*_IMAGE_PROFILES[mtype])
    profile = {}
    for arg in fake_session.get_inputs():
        rank = len(arg.shape)
        # det's db_thresh: one value per image, batch as the image input's
        profile[arg.name] = image if rank == 4 else ShapeProfile((1,), (1,), (image.max[0],))
    return [profile]


class _Setup:
    """A stock predictor (ORT, plain graph) and one on the fused graph behind our hook."""

    def __init__(self, monkeypatch, mtype, ocr_models, onnx_models, fused_paths, **kwargs):
        from paddlex import create_predictor

        def make():
            return create_predictor(
                _NAMES[mtype], model_dir=str(ocr_models.dir_for(mtype)), device="cpu", **kwargs
            )

        plain = onnx_models[mtype].onnx_path
        self.stock, self.adapted = make(), make()
        self.stock.runner = OnnxRuntimeRunner(plain)
        import onnxruntime as ort

        session = ort.InferenceSession(str(fused_paths[mtype]), providers=["CPUExecutionProvider"])
        self.fake = ViewAdapterDouble(fused_paths[mtype], _profiles(session, mtype))
        # native Paddle's stand-in behind the engine: the plain graph on ONNX Runtime
        host = HostNormalizingNative(LazyNativeRunner("native", lambda: OnnxRuntimeRunner(plain)))
        trt = make_runner(
            monkeypatch, self.fake, ViewExecutorDouble, f"{mtype.value}-views", fallback=host
        )
        self.fused = FusedEngineRunner(trt, host, _NAMES[mtype], mtype)
        self.adapted.runner = TimedRunner(self.fused, _NAMES[mtype], "tensorrt")
        predictor_hook._wrap_process(type(self.adapted))  # what install() does at __init__
        predictor_hook.ensure_prepared(self.adapted)
        assert getattr(self.adapted, ADAPTED_ATTR) is not None and self.fused.claimed
        ops = getattr(self.adapted, "pre_tfs", None) or self.adapted.preprocessors
        self.batches: list[list[np.ndarray]] = []
        producer = ops["ToBatch"]

        def recording(imgs):
            out = producer(imgs=imgs)
            self.batches.append(out)
            return out

        ops["ToBatch"] = recording

    def executor(self) -> ViewExecutorDouble:
        (ex,) = self.fake.executors
        return ex


def _check_zero_copy(setup: _Setup, calls: int, inputs: int = 1) -> None:
    """Every call's batch was written into the executor's buffers and run from there."""
    ex = setup.executor()
    assert len(setup.batches) == calls
    assert (ex.zero_copy_inputs, ex.staged_inputs) == (calls * inputs, 0)
    last = setup.batches[-1]
    for produced, ran in zip(last, ex.last_inputs, strict=True):
        assert produced.ctypes.data == ran.ctypes.data and produced.shape == ran.shape


def test_det_writes_the_image_and_thresh_into_the_engine_buffers(
    monkeypatch, ocr_models, onnx_models, fused_paths, sample_images
) -> None:
    setup = _Setup(monkeypatch, ModelType.DETECTION, ocr_models, onnx_models, fused_paths)
    paths = [str(s.path) for s in sample_images[:2]]
    got = list(setup.adapted.predict(paths, thresh=0.35))
    want = list(setup.stock.predict(paths, thresh=0.35))
    _check_zero_copy(setup, calls=len(paths), inputs=2)
    np.testing.assert_array_equal(setup.batches[-1][1], np.float32(0.35))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(np.asarray(g["dt_polys"]), np.asarray(w["dt_polys"]))
        assert list(g["dt_scores"]) == list(w["dt_scores"])
    assert sum(len(w["dt_polys"]) for w in want) >= 5
    # the engine abandoned: plain arrays from the same producer, Paddle's stand-in answers
    setup.fused.abandon("test: engine gone")
    again = list(setup.adapted.predict(paths[:1], thresh=0.35))
    assert not np.shares_memory(setup.batches[-1][0], setup.executor().buffers[0])
    np.testing.assert_array_equal(np.asarray(again[0]["dt_polys"]), np.asarray(want[0]["dt_polys"]))


def test_rec_pads_its_batch_into_the_engine_buffer(
    monkeypatch, ocr_models, onnx_models, fused_paths, crops
) -> None:
    setup = _Setup(
        monkeypatch, ModelType.RECOGNITION, ocr_models, onnx_models, fused_paths, batch_size=6
    )
    batch = crops[:12]
    got = list(setup.adapted.predict(batch))
    want = list(setup.stock.predict(batch))
    _check_zero_copy(setup, calls=2)
    assert [g["rec_text"] for g in got] == [w["rec_text"] for w in want]
    assert [g["rec_score"] for g in got] == [w["rec_score"] for w in want]
    # a width no profile covers: PaddleX's own ToBatch, the per-call fallback answers
    wide = [np.ascontiguousarray(np.tile(crops[0], (1, 80, 1)))]
    assert wide[0].shape[1] * 48 / wide[0].shape[0] > 1600
    (long_line,) = setup.adapted.predict(wide)
    assert setup.fused.primary.fallback_calls == 1
    assert setup.executor().zero_copy_inputs == 2  # unchanged: no view was handed out
    assert long_line["rec_text"] == next(iter(setup.stock.predict(wide)))["rec_text"]


def test_orientation_stacks_into_the_engine_buffer(
    monkeypatch, ocr_models, onnx_models, fused_paths, crops
) -> None:
    setup = _Setup(
        monkeypatch, ModelType.CLASSIFICATION, ocr_models, onnx_models, fused_paths, batch_size=4
    )
    samples = [c for crop in crops[:4] for c in (crop, np.ascontiguousarray(crop[::-1, ::-1]))]
    got = list(setup.adapted.predict(samples))
    want = list(setup.stock.predict(samples))
    _check_zero_copy(setup, calls=2)
    assert [g["label_names"] for g in got] == [w["label_names"] for w in want]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g["scores"], w["scores"], rtol=0, atol=1e-6)
