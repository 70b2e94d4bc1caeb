"""ONNX Runtime and native Paddle runners on the real models and real rendered images."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from paddleocr_trt.backend.base import BaseRunner
from paddleocr_trt.backend.onnx.convert import ConversionResult
from paddleocr_trt.backend.paddle import PaddleInferenceRunner
from paddleocr_trt.engines.onnxruntime import OnnxRuntimeRunner
from paddleocr_trt.errors import ModelDirError
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.testing.images import SampleImage
from paddleocr_trt.testing.models import OCRModelSet

ATOL = 5e-4  # fp32 vs fp32 probabilities; observed up to 7e-5 (rec 4x3x48x640, this CPU)
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _rgb(sample: SampleImage) -> Image.Image:
    return Image.open(sample.path).convert("RGB")


def _det_batch(samples: list[SampleImage], batch: int, height: int, width: int) -> np.ndarray:
    """ImageNet-normalised NCHW, as PaddleX's det pre-processing produces (fixed size here)."""
    arrays = []
    for i in range(batch):
        image = _rgb(samples[i % len(samples)]).resize((width, height), Image.BILINEAR)
        hwc = (np.asarray(image, dtype=np.float32) / 255.0 - _MEAN) / _STD
        arrays.append(hwc.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(arrays), dtype=np.float32)


def _line_batch(
    samples: list[SampleImage], batch: int, height: int, width: int, *, keep_ratio: bool
) -> np.ndarray:
    """(x/255-0.5)/0.5 crops, right-padded with zeros (rec) or stretched (cls)."""
    out = np.zeros((batch, 3, height, width), dtype=np.float32)
    for i in range(batch):
        image = _rgb(samples[i % len(samples)])
        w = min(width, max(1, round(height * image.width / image.height))) if keep_ratio else width
        resized = np.asarray(image.resize((w, height), Image.BILINEAR), dtype=np.float32)
        out[i, :, :, :w] = ((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    return out


@pytest.fixture(scope="module")
def paddle_runners(ocr_models: OCRModelSet) -> Iterator[dict[ModelType, PaddleInferenceRunner]]:
    runners = {t: PaddleInferenceRunner(ocr_models.dir_for(t), cpu_threads=2) for t in ModelType}
    yield runners
    for runner in runners.values():
        runner.close()


@pytest.fixture(scope="module")
def ort_runners(
    onnx_models: dict[ModelType, ConversionResult],
) -> Iterator[dict[ModelType, OnnxRuntimeRunner]]:
    runners = {t: OnnxRuntimeRunner(r.onnx_path, name=t.value) for t, r in onnx_models.items()}
    yield runners
    for runner in runners.values():
        runner.close()


CASES = [
    (ModelType.DETECTION, (1, 3, 640, 640)),
    (ModelType.DETECTION, (2, 3, 320, 480)),
    (ModelType.RECOGNITION, (1, 3, 48, 320)),
    (ModelType.RECOGNITION, (4, 3, 48, 640)),
    (ModelType.CLASSIFICATION, (3, 3, 48, 192)),
    (ModelType.CLASSIFICATION, (1, 3, 48, 192)),
]


def _input_for(model_type: ModelType, shape: tuple[int, ...], samples: list[SampleImage]):
    batch, _, height, width = shape
    if model_type is ModelType.DETECTION:
        return _det_batch(samples, batch, height, width)
    keep_ratio = model_type is ModelType.RECOGNITION
    return _line_batch(samples, batch, height, width, keep_ratio=keep_ratio)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model_type", "shape"), CASES, ids=[f"{t.value}-{'x'.join(map(str, s))}" for t, s in CASES]
)
def test_onnxruntime_matches_native_paddle(
    model_type: ModelType,
    shape: tuple[int, ...],
    paddle_runners: dict[ModelType, PaddleInferenceRunner],
    ort_runners: dict[ModelType, OnnxRuntimeRunner],
    sample_images: list[SampleImage],
) -> None:
    x = _input_for(model_type, shape, sample_images)
    (reference,) = paddle_runners[model_type]([x])
    (candidate,) = ort_runners[model_type]([x])
    assert candidate.shape == reference.shape
    assert candidate.shape[0] == shape[0]
    np.testing.assert_allclose(candidate, reference, rtol=0, atol=ATOL)
    if model_type is ModelType.DETECTION:
        # The real images must give a real text map, or the comparison proves little.
        assert (reference > 0.3).mean() > 0.001
        assert ((candidate > 0.3) != (reference > 0.3)).mean() < 1e-4
    else:
        np.testing.assert_array_equal(candidate.argmax(-1), reference.argmax(-1))
        np.testing.assert_allclose(candidate.sum(-1), 1.0, atol=1e-4)  # softmax outputs


@pytest.mark.slow
@pytest.mark.parametrize("model_type", [ModelType.RECOGNITION, ModelType.CLASSIFICATION])
def test_paddle_runner_reads_pir_format_identically(
    model_type: ModelType,
    ocr_models_pir: OCRModelSet,
    paddle_runners: dict[ModelType, PaddleInferenceRunner],
    sample_images: list[SampleImage],
) -> None:
    shape = (2, 3, 48, 320) if model_type is ModelType.RECOGNITION else (2, 3, 48, 192)
    x = _input_for(model_type, shape, sample_images)
    with PaddleInferenceRunner(ocr_models_pir.dir_for(model_type), cpu_threads=2) as pir:
        assert pir.model_files.program.name == "inference.json"
        (from_pir,) = pir.infer([x])
    (from_legacy,) = paddle_runners[model_type].infer([x])
    np.testing.assert_allclose(from_pir, from_legacy, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_paddle_runner_with_onednn_agrees(
    ocr_models: OCRModelSet,
    paddle_runners: dict[ModelType, PaddleInferenceRunner],
    sample_images: list[SampleImage],
) -> None:
    x = _input_for(ModelType.CLASSIFICATION, (2, 3, 48, 192), sample_images)
    with PaddleInferenceRunner(ocr_models.cls, enable_mkldnn=True, cpu_threads=2) as runner:
        (onednn,) = runner([x])
    (plain,) = paddle_runners[ModelType.CLASSIFICATION]([x])
    np.testing.assert_allclose(onednn, plain, rtol=0, atol=1e-3)


def test_runner_contract(
    paddle_runners: dict[ModelType, PaddleInferenceRunner],
    onnx_models: dict[ModelType, ConversionResult],
) -> None:
    x = np.zeros((1, 3, 48, 192), dtype=np.float32)
    paddle_runner = paddle_runners[ModelType.CLASSIFICATION]
    ort_runner = OnnxRuntimeRunner(onnx_models[ModelType.CLASSIFICATION].onnx_path)
    for runner, backend in ((paddle_runner, "paddle"), (ort_runner, "onnxruntime")):
        assert isinstance(runner, BaseRunner)
        assert runner.backend == backend
        assert runner.input_names == ["x"]
        assert len(runner.output_names) == 1
        by_list = runner([x])[0]
        by_array = runner(x)[0]
        by_keyword = runner(x=x)[0]
        assert by_list.shape == (1, 2)
        np.testing.assert_array_equal(by_list, by_array)
        np.testing.assert_array_equal(by_list, by_keyword)
        with pytest.raises(ValueError, match="input"):
            runner.infer([x, x])
    assert ort_runner.providers == ["CPUExecutionProvider"]
    assert ort_runner.output_names == onnx_models[ModelType.CLASSIFICATION].output_names
    assert "onnxruntime" in repr(ort_runner)
    ort_runner.close()
    with pytest.raises(RuntimeError, match="closed"):
        ort_runner.infer([x])


def test_paddle_runner_rejects_bad_dirs_and_devices(
    ocr_models: OCRModelSet, tmp_path: os.PathLike[str]
) -> None:
    with pytest.raises(ModelDirError):
        PaddleInferenceRunner(tmp_path)
    with pytest.raises(ValueError, match="unsupported device"):
        PaddleInferenceRunner(ocr_models.cls, device="tpu")


def test_importing_runners_and_converter_does_not_import_paddle_or_onnxruntime() -> None:
    code = (
        "import sys\n"
        "import paddleocr_trt.backend.paddle, paddleocr_trt.engines.onnxruntime\n"
        "import paddleocr_trt.backend.onnx.convert, paddleocr_trt.backend.onnx.repair\n"
        "heavy = sorted(m for m in ('paddle', 'paddle2onnx', 'onnxruntime') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    env = {**os.environ, "PADDLEOCR_TRT_DISABLE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
