"""The comparator on real models: native Paddle as reference, real ONNX Runtime candidates."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from paddleocr_trt.backend.base import BaseRunner
from paddleocr_trt.backend.onnx.convert import ConversionResult
from paddleocr_trt.backend.paddle import PaddleInferenceRunner
from paddleocr_trt.comparator import build_validation_inputs, compare, metrics
from paddleocr_trt.engines.onnxruntime import OnnxRuntimeRunner
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.testing.images import SampleImage
from paddleocr_trt.testing.models import DET_MODEL_NAME, REC_MODEL_NAME, OCRModelSet

VALIDATION_IMAGES = ("english_document", "chinese_lines", "rotated_180")
DET, REC, CLS = ModelType.DETECTION, ModelType.RECOGNITION, ModelType.CLASSIFICATION


@pytest.fixture(scope="module")
def validation_images(sample_images_by_name: dict[str, SampleImage]) -> list[Path]:
    return [sample_images_by_name[name].path for name in VALIDATION_IMAGES]


@pytest.fixture(scope="module")
def references(ocr_models: OCRModelSet) -> Iterator[dict[ModelType, PaddleInferenceRunner]]:
    runners = {t: PaddleInferenceRunner(ocr_models.dir_for(t), cpu_threads=2) for t in ModelType}
    yield runners
    for runner in runners.values():
        runner.close()


@pytest.fixture(scope="module")
def validation_inputs(
    ocr_models: OCRModelSet, validation_images: list[Path]
) -> dict[ModelType, list[np.ndarray]]:
    """Small on purpose: three images, one det size plus a batch, rec/cls batches of four."""
    return {
        DET: build_validation_inputs(
            DET, validation_images, model_dir=ocr_models.det, shapes=(640,), batch_sizes=(1, 2),
            max_shape=(2, 3, 320, 320),
        ),
        REC: build_validation_inputs(
            REC, validation_images, model_dir=ocr_models.rec, batch_sizes=(4,),
            max_shape=(1, 3, 48, 960),
        ),
        CLS: build_validation_inputs(
            CLS, validation_images, model_dir=ocr_models.cls, batch_sizes=(4,),
            max_shape=(8, 3, 48, 192),
        ),
    }  # fmt: skip


def _perturbed_copy(source: Path, target: Path, relative_noise: float, seed: int = 0) -> Path:
    """The same graph with Gaussian noise (``relative_noise`` x weight std) on conv weights."""
    model = onnx.load(str(source))
    initializers = {init.name: init for init in model.graph.initializer}
    rng = np.random.default_rng(seed)
    changed = 0
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in initializers:
            init = initializers[node.input[1]]
            weights = numpy_helper.to_array(init)
            noise = rng.normal(0.0, relative_noise * float(weights.std()), weights.shape)
            init.CopyFrom(
                numpy_helper.from_array((weights + noise).astype(weights.dtype), init.name)
            )
            changed += 1
    assert changed > 0, f"{source} has no Conv weights to perturb"
    onnx.save(model, str(target))
    return target


# -- inputs ---------------------------------------------------------------------------------


def test_input_shapes(validation_inputs: dict[ModelType, list[np.ndarray]]) -> None:
    det, rec, cls = validation_inputs[DET], validation_inputs[REC], validation_inputs[CLS]
    for x in det + rec + cls:
        assert x.dtype == np.float32 and x.ndim == 4 and x.shape[1] == 3
        assert np.isfinite(x).all()
    assert all(x.shape[2] % 32 == 0 and x.shape[3] % 32 == 0 for x in det)
    assert det[-1].shape == (2, 3, 320, 320), "the profile's max shape is exercised exactly"
    assert all(x.shape[2] <= 320 and x.shape[3] <= 320 for x in det), "kept within max_shape"
    assert any(x.shape[0] == 2 for x in det[:-1]), "batch size 2 is built"
    assert all(x.shape[2] == 48 and 320 <= x.shape[3] <= 960 for x in rec)
    assert rec[-1].shape == (1, 3, 48, 960)
    assert len({x.shape[3] for x in rec}) >= 2, "several rec widths"
    assert all(x.shape[2:] == (48, 192) for x in cls) and cls[-1].shape[0] == 8
    # PaddleX normalisations: rec/cls (x/255-0.5)/0.5 in [-1, 1]; det ImageNet statistics.
    assert all(x.min() >= -1.0 and x.max() <= 1.0 for x in rec + cls)
    assert min(float(x.min()) for x in det) < -1.5 and max(float(x.max()) for x in det) > 2.0


class _Recorder(BaseRunner):
    """Delegates to PaddleX's own runner and keeps every tensor PaddleX fed it."""

    backend = "paddle"

    def __init__(self, inner: object) -> None:
        super().__init__("recorder")
        self.inner = inner
        self.seen: list[np.ndarray] = []

    def infer(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.seen.extend(np.array(x) for x in inputs)
        return list(self.inner(x=list(inputs)))  # type: ignore[operator]


def _paddlex_predictor(model_name: str, model_dir: Path) -> object:
    from paddlex.inference import create_predictor

    predictor = create_predictor(model_name, model_dir=str(model_dir), device="cpu")
    predictor.runner = _Recorder(predictor.runner)
    return predictor


@pytest.mark.slow
def test_det_inputs_equal_paddlex_preprocessing(
    ocr_models: OCRModelSet, sample_images_by_name: dict[str, SampleImage]
) -> None:
    path = sample_images_by_name["english_document"].path
    predictor = _paddlex_predictor(DET_MODEL_NAME, ocr_models.det)
    list(predictor.predict(str(path)))  # type: ignore[attr-defined]
    (seen,) = predictor.runner.seen  # type: ignore[attr-defined]
    # PP-OCRv4 det in PaddleX: long side limited to 960 ("max"): our 960 entry.
    (ours,) = build_validation_inputs(DET, [path], model_dir=ocr_models.det, shapes=(960,))
    assert ours.shape == seen.shape
    np.testing.assert_array_equal(ours, seen)


@pytest.mark.slow
def test_rec_inputs_equal_paddlex_preprocessing(
    ocr_models: OCRModelSet, sample_images_by_name: dict[str, SampleImage]
) -> None:
    sample = sample_images_by_name["long_line"]
    from PIL import Image

    with Image.open(sample.path) as image:
        w, h = image.size
    whole = [np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)]
    predictor = _paddlex_predictor(REC_MODEL_NAME, ocr_models.rec)
    list(predictor.predict(str(sample.path)))  # type: ignore[attr-defined]
    (seen,) = predictor.runner.seen  # type: ignore[attr-defined]
    (ours,) = build_validation_inputs(REC, [sample.path], model_dir=ocr_models.rec, boxes=[whole])
    assert seen.shape[3] > 1000 and ours.shape == seen.shape
    np.testing.assert_allclose(ours, seen, atol=1e-6)


# -- metrics on real outputs ----------------------------------------------------------------


def test_text_metrics_on_known_strings() -> None:
    assert metrics.edit_distance("kitten", "sitting") == 3
    assert metrics.character_error_rate("kitten", "sitting") == pytest.approx(0.5)
    assert metrics.character_error_rate("", "") == 0.0
    assert metrics.character_error_rate("abc", "") == 1.0
    assert metrics.character_error_rate("a b c", "abc", ignore_spaces=True) == 0.0
    agreement = metrics.text_agreement(["北京欢迎你", "Hello"], ["北京欢迎你", "Hallo"])
    assert agreement.exact_match_rate == 0.5 and agreement.cer == pytest.approx(1 / 10)


@pytest.mark.slow
def test_box_metrics_on_real_det_output(
    references: dict[ModelType, PaddleInferenceRunner],
    validation_inputs: dict[ModelType, list[np.ndarray]],
) -> None:
    x = validation_inputs[DET][0]  # the English document: four lines
    (prob_map,) = references[DET].infer([x])
    (boxes,) = metrics.db_boxes(prob_map)
    assert len(boxes) == 4
    assert metrics.box_f1(boxes, boxes) == 1.0
    assert metrics.box_f1(boxes, boxes[:2]) == pytest.approx(2 * 2 / (4 + 2))
    shifted = [b + np.array([0.0, 500.0], dtype=np.float32) for b in boxes]
    assert metrics.box_f1(boxes, shifted) == 0.0
    assert metrics.box_f1([], []) == 1.0


@pytest.mark.slow
def test_ctc_decode_reads_real_rec_output(
    references: dict[ModelType, PaddleInferenceRunner],
    ocr_models: OCRModelSet,
    sample_images_by_name: dict[str, SampleImage],
) -> None:
    sample = sample_images_by_name["chinese_lines"]
    dictionary = metrics.load_postprocess_config(ocr_models.rec)["character_dict"]
    assert len(dictionary) == 6623
    texts = []
    for x in build_validation_inputs(REC, [sample.path], model_dir=ocr_models.rec):
        texts += metrics.ctc_decode(references[REC].infer([x])[0], dictionary)
    assert sorted(texts) == sorted(sample.lines)


def test_label_agreement_on_real_cls_output(
    references: dict[ModelType, PaddleInferenceRunner],
    validation_inputs: dict[ModelType, list[np.ndarray]],
) -> None:
    (scores,) = references[CLS].infer([validation_inputs[CLS][0]])
    assert metrics.label_agreement(scores, scores) == (4, 4)
    flipped = scores[:, ::-1].copy()
    assert metrics.label_agreement(scores, flipped) == (0, 4)


# -- compare --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model_type", [DET, REC, CLS], ids=lambda t: t.value)
def test_reference_against_itself_agrees_fully(
    model_type: ModelType,
    references: dict[ModelType, PaddleInferenceRunner],
    validation_inputs: dict[ModelType, list[np.ndarray]],
) -> None:
    ref = references[model_type]
    report = compare(model_type, ref, ref, validation_inputs[model_type])
    assert report.passed and report.agreement == 1.0 and report.reason is None
    assert all(s["max_abs_diff"] == 0.0 for s in report.tensor_stats)
    assert report.num_inputs == len(report.details) == len(validation_inputs[model_type])


@pytest.mark.slow
@pytest.mark.parametrize("model_type", [DET, REC, CLS], ids=lambda t: t.value)
def test_onnxruntime_conversion_passes(
    model_type: ModelType,
    references: dict[ModelType, PaddleInferenceRunner],
    validation_inputs: dict[ModelType, list[np.ndarray]],
    onnx_models: dict[ModelType, ConversionResult],
) -> None:
    with OnnxRuntimeRunner(onnx_models[model_type].onnx_path) as candidate:
        report = compare(
            model_type, references[model_type], candidate, validation_inputs[model_type]
        )
    assert report.passed, report.reason
    assert report.agreement >= 0.99
    (stats,) = report.tensor_stats
    assert 0.0 < stats["max_abs_diff"] < 1e-2 and stats["finite"]
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["passed"] is True and payload["model_type"] == model_type.value
    assert "onnxruntime" in payload["candidate"] and "paddle" in payload["reference"]


# Noise (x weight std) that clearly breaks each network; 0.05 is already enough for rec.
_NOISE = {DET: 0.3, REC: 0.1, CLS: 0.3}


@pytest.mark.slow
@pytest.mark.parametrize("model_type", [DET, REC, CLS], ids=lambda t: t.value)
def test_perturbed_weights_fail(
    model_type: ModelType,
    references: dict[ModelType, PaddleInferenceRunner],
    validation_inputs: dict[ModelType, list[np.ndarray]],
    onnx_models: dict[ModelType, ConversionResult],
    tmp_path: Path,
) -> None:
    broken = _perturbed_copy(
        onnx_models[model_type].onnx_path, tmp_path / "perturbed.onnx", _NOISE[model_type]
    )
    with OnnxRuntimeRunner(broken) as candidate:
        report = compare(
            model_type, references[model_type], candidate, validation_inputs[model_type]
        )
    assert not report.passed
    assert report.agreement < 0.99
    assert (
        report.reason and model_type.value in report.reason and "< required 0.99" in report.reason
    )
    assert report.tensor_stats[0]["max_abs_diff"] > 1e-2
    json.dumps(report.to_dict())


def test_wrong_model_type_fails_with_reason(
    references: dict[ModelType, PaddleInferenceRunner],
    validation_inputs: dict[ModelType, list[np.ndarray]],
) -> None:
    # A real but wrong network (the orientation classifier) offered as the recogniser.
    inputs = validation_inputs[REC][:1]
    report = compare(REC, references[REC], references[CLS], inputs)
    assert not report.passed and report.agreement == 0.0
    assert report.reason is not None and "shape" in report.reason


def test_recognition_without_dictionary_is_refused(
    validation_inputs: dict[ModelType, list[np.ndarray]],
    onnx_models: dict[ModelType, ConversionResult],
) -> None:
    with (
        OnnxRuntimeRunner(onnx_models[REC].onnx_path) as a,
        OnnxRuntimeRunner(onnx_models[REC].onnx_path) as b,
        pytest.raises(ValueError, match="character"),
    ):
        compare(REC, a, b, validation_inputs[REC][:1])
