"""Validation of fused graphs (issue 11) on the real PP-OCRv4 graphs and real images: the check
the ONNX Runtime engine and TensorRT builds run before anything fused is cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from paddleocr_trt.backend.onnx.fuse import UINT8_INPUT, prepend_uint8_normalize
from paddleocr_trt.backend.onnx.fuse_db import append_db_bitmap
from paddleocr_trt.comparator.fused import build_fused_pairs, compare_fused, uint8_like
from paddleocr_trt.engines.onnxruntime.runner import OnnxRuntimeRunner
from paddleocr_trt.fusion import fuse_model
from paddleocr_trt.fusion.artifacts import engine_onnx, with_side_inputs
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.profiles import default_profiles, fit_static_dims

DET, REC, CLS = ModelType.DETECTION, ModelType.RECOGNITION, ModelType.CLASSIFICATION


@pytest.fixture(scope="module")
def pairs(ocr_models, sample_images) -> dict[ModelType, list]:
    images = [s.path for s in sample_images if s.name in ("english_document", "chinese_lines")]
    return {
        mtype: build_fused_pairs(
            mtype, images, model_dir=ocr_models.dir_for(mtype), batch_sizes=(1, 4)
        )
        for mtype in (DET, REC, CLS)
    }


@pytest.fixture(scope="module")
def fused(onnx_models, ocr_models, tmp_path_factory) -> dict[ModelType, Path]:
    out = tmp_path_factory.mktemp("fused_validation")
    paths = {}
    for mtype in (DET, REC, CLS):
        model = fuse_model(
            mtype, onnx.load(str(onnx_models[mtype].onnx_path)), ocr_models.dir_for(mtype)
        )
        paths[mtype] = out / f"{mtype.value}.onnx"
        onnx.save(model, str(paths[mtype]))
    return paths


def test_pairs_are_paddlex_inputs_in_both_forms(pairs, ocr_models) -> None:
    for mtype in (DET, CLS):
        for pair in pairs[mtype]:
            assert pair.fused.dtype == np.uint8 and pair.fused.shape[3] == 3
            assert pair.base.dtype == np.float32
            n, h, w, _ = pair.fused.shape
            assert pair.base.shape == (n, 3, h, w)
            # the base input is PaddleX's normalisation of exactly these pixels
            assert np.abs(uint8_like(pair.base, ocr_models.dir_for(mtype)).astype(int)
                          - pair.fused).max() <= 1  # fmt: skip
    assert any(p.fused.shape[0] == 4 for p in pairs[DET])  # a multi-image batch
    assert all(p.fused is p.base for p in pairs[REC])


@pytest.mark.parametrize("mtype", [DET, REC, CLS])
def test_correctly_fused_graph_passes_exactly(mtype, onnx_models, fused, pairs, ocr_models) -> None:
    with (
        OnnxRuntimeRunner(onnx_models[mtype].onnx_path) as base,
        OnnxRuntimeRunner(fused[mtype]) as f,
    ):
        report = compare_fused(mtype, base, f, pairs[mtype], model_dir=ocr_models.dir_for(mtype))
    assert report.passed, report.reason
    assert report.agreement == 1.0
    assert report.tensor_stats[0]["max_abs_diff"] <= 1e-5
    if mtype is REC:
        assert all(d["index_mismatches"] == 0 for d in report.details)


def test_wrong_normalisation_fails_exact_check_only_when_asked(
    onnx_models, pairs, ocr_models, tmp_path
) -> None:
    """A det graph normalised with a mean off by 2/255: boxes barely move (task agreement may
    pass) but the exact check against the validated graph must catch it."""
    model = onnx.load(str(onnx_models[DET].onnx_path))
    off = [0.485 + 2 / 255, 0.456, 0.406]
    wrong = prepend_uint8_normalize(model, scale=1 / 255, mean=off, std=[0.229, 0.224, 0.225])
    wrong = append_db_bitmap(wrong)  # the det engine contract (db_thresh in, bitmap out)
    path = tmp_path / "det.wrong.onnx"
    onnx.save(wrong, str(path))
    with OnnxRuntimeRunner(onnx_models[DET].onnx_path) as base, OnnxRuntimeRunner(path) as cand:
        strict = compare_fused(DET, base, cand, pairs[DET], model_dir=ocr_models.det)
        loose = compare_fused(DET, base, cand, pairs[DET], model_dir=ocr_models.det, tolerance=None)
    assert not strict.passed and "differs from the base graph" in strict.reason
    assert loose.tensor_stats == strict.tensor_stats
    assert loose.reason is None or "det_box_f1" in loose.reason


def test_unfused_rec_graph_is_refused(onnx_models, pairs, ocr_models) -> None:
    with OnnxRuntimeRunner(onnx_models[REC].onnx_path) as base:
        report = compare_fused(REC, base, base, pairs[REC], model_dir=ocr_models.rec)
    assert not report.passed and "not (index, max prob)" in report.reason


@pytest.mark.parametrize("mtype", [DET, REC, CLS])
def test_tensorrt_onnx_is_fused_after_fp16(mtype, onnx_models, ocr_models, pairs, tmp_path) -> None:
    """What the TensorRT builder gets: fused fp32 and fused fp16 graphs whose I/O are the fused
    ones (uint8 NHWC in, fp32 probs / int32 index out) and match the NHWC profiles."""
    fused32, fused16 = engine_onnx(
        mtype, ocr_models.dir_for(mtype), onnx_models[mtype].onnx_path, tmp_path, fp16_onnx=True
    )
    assert fused16 is not None
    for path in (fused32, fused16):
        graph = onnx.load(str(path)).graph
        inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
        inp = inputs[0]
        assert [i.name for i in inputs[1:]] == (["db_thresh"] if mtype is DET else [])
        elem = inp.type.tensor_type.elem_type
        dims = [
            d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim
        ]
        if mtype is REC:
            assert elem == onnx.TensorProto.FLOAT
            assert [o.name for o in graph.output] == ["ctc_index", "ctc_max_prob"]
            assert [o.type.tensor_type.elem_type for o in graph.output] == [
                onnx.TensorProto.INT32, onnx.TensorProto.FLOAT]  # fmt: skip
        else:
            assert inp.name == UINT8_INPUT and elem == onnx.TensorProto.UINT8 and dims[3] == 3
            profiles = with_side_inputs(mtype, default_profiles(mtype, inp.name), inp.name)
            shapes = {i.name: [d.dim_value if d.HasField("dim_value") else -1
                               for d in i.type.tensor_type.shape.dim] for i in inputs}  # fmt: skip
            assert fit_static_dims(profiles, shapes)
    # the fp16 graph still runs on the fused inputs; rec indices agree with the fp32 graph's
    pair = pairs[mtype][0]
    with OnnxRuntimeRunner(fused32) as f32, OnnxRuntimeRunner(fused16) as f16:
        out32, out16 = f32.infer(pair.fused_inputs), f16.infer(pair.fused_inputs)
    assert [o.shape for o in out16] == [o.shape for o in out32]
    if mtype is REC:
        assert (out16[0] == out32[0]).mean() > 0.95
