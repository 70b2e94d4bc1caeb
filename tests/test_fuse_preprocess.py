"""Preprocessing in the graph (issue 11 item 2): a graph fed uint8 NHWC must see exactly what
PaddleX's own NormalizeImage/Normalize + ToCHWImage + ToBatch would have given it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from paddleocr_trt.backend.onnx.fuse import (
    UINT8_INPUT,
    load_normalize_args,
    normalize_args_from_config,
    normalize_constants,
    prepend_uint8_normalize,
)
from paddleocr_trt.backend.onnx.fuse_db import db_thresh_input
from paddleocr_trt.engines.onnxruntime.runner import OnnxRuntimeRunner
from paddleocr_trt.fusion import fuse_model
from paddleocr_trt.model_types import ModelType

_DET_IMAGES = ("english_document", "chinese_lines", "large_page", "tiny_word", "rgba")


def _identity_nchw() -> onnx.ModelProto:
    """x -> y unchanged: the fused prologue's output becomes visible as the model output."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def det_resized(sample_images) -> list[np.ndarray]:
    """BGR uint8 pages resized by PaddleX's DetResizeForTest at two limits, as det holds them."""
    from paddlex.inference.common.reader import ReadImage
    from paddlex.inference.models.text_detection.processors import DetResizeForTest

    reader = ReadImage(format="BGR")
    pages = [reader.read(str(s.path)) for s in sample_images if s.name in _DET_IMAGES]
    out = []
    for side in (320, 960):
        resize = DetResizeForTest(limit_side_len=side, limit_type="max")
        out.extend(resize(imgs=[page], max_side_limit=4000)[0][0] for page in pages)
    return out


def _paddlex_det_input(ocr_models, images: list[np.ndarray]) -> np.ndarray:
    """PaddleX's own det preprocessing after resize, with the model's inference.yml values."""
    from paddlex.inference.models.common import ToBatch, ToCHWImage
    from paddlex.inference.models.text_detection.processors import NormalizeImage

    args = load_normalize_args(ocr_models.det)
    normalize = NormalizeImage(**args, order="hwc")
    return ToBatch()(imgs=ToCHWImage()(imgs=normalize(imgs=images)))[0]


def test_prologue_is_bit_exact_with_paddlex_normalize(
    ocr_models, det_resized, tmp_path: Path
) -> None:
    args = load_normalize_args(ocr_models.det)
    runner = OnnxRuntimeRunner(
        _save(prepend_uint8_normalize(_identity_nchw(), **args), tmp_path / "id.onnx")
    )
    assert runner.input_names == [UINT8_INPUT]
    shapes = set()
    for image in det_resized:
        batch = np.stack([image[..., :3]])
        got = runner([batch])[0]
        np.testing.assert_array_equal(got, _paddlex_det_input(ocr_models, [image[..., :3]]))
        assert batch.nbytes * 4 == got.nbytes  # 4x fewer bytes cross to the engine
        shapes.add(got.shape)
    assert len(shapes) >= 6  # several real sizes


def test_reverse_channels_flips_bgr_to_rgb(det_resized, tmp_path: Path) -> None:
    from paddlex.inference.models.common import Normalize

    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    model = prepend_uint8_normalize(
        _identity_nchw(), scale="1./255.", mean=mean, std=std, reverse_channels=True
    )
    runner = OnnxRuntimeRunner(_save(model, tmp_path / "flip.onnx"))
    bgr = det_resized[0]
    want = Normalize(scale=1 / 255, mean=mean, std=std)(imgs=[bgr[..., ::-1].copy()])[0]
    np.testing.assert_array_equal(runner([bgr[None]])[0][0], want.transpose(2, 0, 1))


@pytest.fixture(scope="module")
def det_runners(onnx_models, ocr_models, tmp_path_factory):
    source = onnx_models[ModelType.DETECTION].onnx_path
    fused = fuse_model(ModelType.DETECTION, onnx.load(str(source)), ocr_models.det)
    path = _save(fused, tmp_path_factory.mktemp("fused_det") / "det.uint8.onnx")
    return OnnxRuntimeRunner(source), OnnxRuntimeRunner(path)


def test_fused_det_matches_paddlex_preprocessing_plus_model(
    ocr_models, det_runners, det_resized
) -> None:
    stock, fused = det_runners
    for image in det_resized[:: len(_DET_IMAGES) - 1]:  # one per size limit, few for speed
        image = image[..., :3]
        want = stock([_paddlex_det_input(ocr_models, [image])])[0]
        got = fused([image[None], db_thresh_input(0.3, 1)])[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_fused_det_batch(ocr_models, det_runners, sample_images) -> None:
    """PaddleX batches det images of one size; the fused graph takes that batch as uint8."""
    from paddlex.inference.common.reader import ReadImage
    from paddlex.inference.models.text_detection.processors import DetResizeForTest

    stock, fused = det_runners
    reader = ReadImage(format="BGR")
    pages = [reader.read(str(s.path))[..., :3] for s in sample_images[:3]]
    resized = DetResizeForTest(image_shape=[320, 480])(imgs=pages)[0]
    want = stock([_paddlex_det_input(ocr_models, resized)])[0]
    got = fused([np.stack(resized), db_thresh_input(0.3, 3)])[0]
    assert got.shape == want.shape == (3, 1, 320, 480)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_fused_textline_orientation_matches_paddlex(
    onnx_models, ocr_models, sample_images, tmp_path: Path
) -> None:
    """The classifier reads crops as RGB; resize, then PaddleX Normalize vs the fused graph."""
    from paddlex.inference.common.reader import ReadImage
    from paddlex.inference.models.common import Normalize, Resize, ToBatch, ToCHWImage

    from paddleocr_trt.comparator.inputs import _crops

    source = onnx_models[ModelType.CLASSIFICATION].onnx_path
    fused_model = fuse_model(ModelType.CLASSIFICATION, onnx.load(str(source)), ocr_models.cls)
    stock, fused = (
        OnnxRuntimeRunner(source),
        OnnxRuntimeRunner(_save(fused_model, tmp_path / "cls.uint8.onnx")),
    )
    args = load_normalize_args(ocr_models.cls)
    crops = _crops([s.path for s in sample_images[:4]], None)
    rgb = ReadImage(format="RGB")
    samples = [
        rgb.read(c) for crop in crops for c in (crop, np.ascontiguousarray(crop[::-1, ::-1]))
    ]
    resized = Resize(target_size=[192, 48], size_divisor=None, interp="LINEAR", backend="cv2")(
        imgs=samples
    )
    normalize = Normalize(scale=args["scale"], mean=args["mean"], std=args["std"])
    for batch in ([resized[0]], resized[:6]):
        want = stock([ToBatch()(imgs=ToCHWImage()(imgs=normalize(imgs=batch)))[0]])[0]
        got = fused([np.stack(batch)])[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got.argmax(axis=1), want.argmax(axis=1))
    labels = fused([np.stack(resized)])[0].argmax(axis=1)
    assert labels[0::2].tolist() != labels[1::2].tolist()  # upright vs flipped told apart


def test_normalize_arguments_and_errors(ocr_models) -> None:
    from paddlex.inference.models.text_detection.processors import NormalizeImage

    args = load_normalize_args(ocr_models.det)
    alpha, beta = normalize_constants(**args)
    reference = NormalizeImage(**args)
    assert alpha.tolist() == np.float32(reference.alpha).tolist()
    assert beta.tolist() == np.float32(reference.beta).tolist()
    assert (
        normalize_constants("1./255.", [0.5] * 3, [0.5] * 3)[0].tolist()
        == [np.float32(2 / 255)] * 3
    )
    with pytest.raises(ValueError, match="std"):
        normalize_constants(1.0, [0, 0, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="scale"):
        normalize_constants("one/255", [0, 0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="NormalizeImage"):
        normalize_args_from_config({"PreProcess": {"transform_ops": [{"ToCHWImage": None}]}})
    with pytest.raises(ValueError, match=r"inference\.yml"):
        load_normalize_args(ocr_models.det.parent / "missing")
    fused = prepend_uint8_normalize(_identity_nchw(), **args)
    with pytest.raises(ValueError, match="float32 NCHW"):
        prepend_uint8_normalize(fused, **args)


def test_rgba_arrays_get_paddlex_conversion(ocr_models, det_resized, tmp_path: Path) -> None:
    """Det's NormalizeImage turns 4-channel arrays into 3 before normalising; so does the glue."""
    import cv2

    from paddleocr_trt.fusion.predictors import KeepUint8, StackUint8

    args = load_normalize_args(ocr_models.det)
    runner = OnnxRuntimeRunner(
        _save(prepend_uint8_normalize(_identity_nchw(), **args), tmp_path / "id.onnx")
    )
    rgba = cv2.cvtColor(det_resized[0], cv2.COLOR_BGR2BGRA)
    rgba[..., 3] = 128
    got = runner(StackUint8()(KeepUint8()([rgba])))[0]
    np.testing.assert_array_equal(got, _paddlex_det_input(ocr_models, [rgba]))
    with pytest.raises(ValueError, match="HxWx3"):
        KeepUint8()([rgba[..., 0]])
    with pytest.raises(TypeError, match="uint8"):
        StackUint8()([rgba.astype(np.float32)])
