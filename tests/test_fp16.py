"""FP16 ONNX rewrite, fp16 sensitivity analysis and per-node fp32 repair, on the real models.

Two det graphs matter here. The converter's (``onnx_models``) has its BatchNormalizations folded
into the convolutions. paddle2onnx's raw output keeps one BatchNormalization whose running
variances reach ~1e8: beyond fp16's 65504. A naive fp16 rewrite clips them and the probability
map goes wrong by up to 1.0: the real breakage this module exists for, reproduced on the CPU.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from paddleocr_trt.backend.onnx.fp16 import (
    FP16_MAX,
    convert_to_fp16,
    ensure_node_names,
    float_constants,
    fp16_node_names,
)
from paddleocr_trt.backend.onnx.precision import (
    find_fp16_sensitive_nodes,
    relative_error,
    repair_fp16,
)
from paddleocr_trt.comparator.compare import compare
from paddleocr_trt.comparator.inputs import build_validation_inputs
from paddleocr_trt.comparator.metrics import ctc_decode, load_postprocess_config
from paddleocr_trt.engines.onnxruntime.runner import OnnxRuntimeRunner
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.testing.images import SampleImage
from paddleocr_trt.testing.models import OCRModelSet

DET_THRESH = 0.3  # DBPostProcess.thresh of the PP-OCRv4 det inference.yml


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    runner = OnnxRuntimeRunner(path)
    try:
        return runner.infer([x])[0]
    finally:
        runner.close()


def _load(path: Path) -> onnx.ModelProto:
    model = onnx.load(str(path))
    ensure_node_names(model)
    return model


def _out_of_range_readers(model: onnx.ModelProto) -> set[str]:
    """Nodes reading a float constant with values beyond the fp16 range."""
    big = {
        name
        for name, value in float_constants(model).items()
        if np.abs(value).max(initial=0.0) > FP16_MAX
    }
    return {n.name for n in model.graph.node if big & set(n.input)}


def _det_check(reference: Path, inputs: list[np.ndarray]) -> Callable[[Path], bool]:
    """The product's acceptance test: the comparator's det box F1 >= 0.99 against fp32."""

    def check(candidate: Path) -> bool:
        ref, cand = OnnxRuntimeRunner(reference), OnnxRuntimeRunner(candidate)
        try:
            return compare(ModelType.DETECTION, ref, cand, inputs, min_agreement=0.99).passed
        finally:
            ref.close()
            cand.close()

    return check


@pytest.fixture(scope="module")
def det_inputs(sample_images_by_name: dict[str, SampleImage]) -> list[np.ndarray]:
    images = [sample_images_by_name[n].path for n in ("english_document", "chinese_lines")]
    return build_validation_inputs(ModelType.DETECTION, images, shapes=(640,))


@pytest.fixture(scope="module")
def rec_inputs(
    sample_images_by_name: dict[str, SampleImage], ocr_models: OCRModelSet
) -> list[np.ndarray]:
    images = [sample_images_by_name[n].path for n in ("english_document", "long_line")]
    return build_validation_inputs(ModelType.RECOGNITION, images, model_dir=ocr_models.rec)


@pytest.fixture(scope="module")
def raw_det_onnx(ocr_models: OCRModelSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """paddle2onnx's own det output (no BatchNormalization folding), as a real subprocess."""
    out = tmp_path_factory.mktemp("raw_det") / "det_raw.onnx"
    cmd = [
        str(Path(sys.executable).with_name("paddle2onnx")),
        "--model_dir", str(ocr_models.det),
        "--model_filename", "inference.pdmodel",
        "--params_filename", "inference.pdiparams",
        "--save_file", str(out),
        "--opset_version", "17",
        "--optimize_tool", "None",  # its default pass costs ~30 s on 2 cores; unneeded here
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=out.parent, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-2000:]
    return out


@pytest.mark.slow
def test_keep_io_types_gives_fp32_io_and_fp16_inside(onnx_models, det_inputs, tmp_path) -> None:
    source = onnx_models[ModelType.DETECTION].onnx_path
    out = convert_to_fp16(source, tmp_path / "det16.onnx")
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [TensorProto.FLOAT]
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    weight_types = {i.data_type for i in model.graph.initializer if i.name in conv_weights}
    assert weight_types == {TensorProto.FLOAT16}
    runner = OnnxRuntimeRunner(out)
    (output,) = runner.infer([det_inputs[0]])
    assert output.dtype == np.float32
    assert output.shape == _run(source, det_inputs[0]).shape

    # Without keep_io_types the graph's I/O is fp16 too, and it runs when fed fp16.
    out_io16 = convert_to_fp16(source, tmp_path / "det16_io16.onnx", keep_io_types=False)
    io16 = onnx.load(str(out_io16))
    assert io16.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert io16.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    (half,) = OnnxRuntimeRunner(out_io16).infer([det_inputs[0].astype(np.float16)])
    assert half.dtype == np.float16
    assert np.abs(half.astype(np.float32) - output).max() < 0.1


@pytest.mark.slow
def test_fp16_rec_agrees_with_fp32_on_text(onnx_models, ocr_models, rec_inputs, tmp_path) -> None:
    source = onnx_models[ModelType.RECOGNITION].onnx_path
    out = convert_to_fp16(source, tmp_path / "rec16.onnx")
    assert onnx.load(str(out)).graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    charset = load_postprocess_config(ocr_models.rec)["character_dict"]
    argmax_same = texts_same = rows = 0
    for x in rec_inputs:
        ref, cand = _run(source, x), _run(out, x)
        argmax_same += int((ref.argmax(-1) == cand.argmax(-1)).all(axis=-1).sum())
        texts_same += sum(
            a == b for a, b in zip(ctc_decode(ref, charset), ctc_decode(cand, charset), strict=True)
        )
        rows += x.shape[0]
    assert rows >= 4
    assert texts_same == rows
    assert argmax_same >= rows - 1  # a tie between two near-equal classes may flip; text may not
    report = compare(
        ModelType.RECOGNITION,
        OnnxRuntimeRunner(source),
        OnnxRuntimeRunner(out),
        rec_inputs,
        character_dict=charset,
    )
    assert report.passed, report.reason


@pytest.mark.slow
def test_naive_fp16_breaks_raw_det_and_validation_catches_it(
    raw_det_onnx, det_inputs, tmp_path
) -> None:
    naive = convert_to_fp16(raw_det_onnx, tmp_path / "naive.onnx", keep_out_of_range_weights=False)
    x = det_inputs[0]
    ref, cand = _run(raw_det_onnx, x), _run(naive, x)
    diff = np.abs(ref - cand)
    assert diff.max() > 0.5
    assert (
        abs(int((cand > DET_THRESH).sum()) - int((ref > DET_THRESH).sum()))
        > 0.1 * (ref > DET_THRESH).sum()
    )
    assert not _det_check(raw_det_onnx, det_inputs)(naive)

    # The default rewrite keeps exactly the nodes with out-of-range weights in fp32, and passes.
    model = _load(raw_det_onnx)
    clipped = _out_of_range_readers(model)
    assert clipped
    kept = fp16_node_names(model, keep_out_of_range_weights=False) - fp16_node_names(model)
    assert kept == clipped
    safe = convert_to_fp16(raw_det_onnx, tmp_path / "safe.onnx")
    assert np.abs(_run(safe, x) - ref).max() < 0.1
    assert _det_check(raw_det_onnx, det_inputs)(safe)


@pytest.mark.slow
def test_sensitivity_ranks_the_clipped_node_first(raw_det_onnx, det_inputs) -> None:
    scores = find_fp16_sensitive_nodes(
        raw_det_onnx, det_inputs[:1], top_k=5, keep_out_of_range_weights=False
    )
    assert len(scores) == 5
    assert scores[0].node in _out_of_range_readers(_load(raw_det_onnx))
    assert scores[0].output_error > 1.0 > 100 * scores[0].input_error
    assert [s.introduced for s in scores] == sorted((s.introduced for s in scores), reverse=True)


@pytest.mark.slow
def test_repair_pins_few_nodes_until_the_comparator_passes(
    raw_det_onnx, det_inputs, tmp_path
) -> None:
    out = tmp_path / "repaired.onnx"
    started = time.perf_counter()
    result = repair_fp16(
        raw_det_onnx,
        out,
        det_inputs,
        _det_check(raw_det_onnx, det_inputs),
        max_rounds=4,
        keep_out_of_range_weights=False,
    )
    elapsed = time.perf_counter() - started
    assert result.passed and result.onnx_path == out and out.is_file()
    assert 1 <= len(result.pinned_nodes) < result.fp16_nodes
    assert result.rounds == len(result.history) - 1 >= 1
    assert not result.history[0].passed and result.history[-1].passed
    assert set(result.pinned_nodes) & _out_of_range_readers(_load(raw_det_onnx))
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no round leftovers
    x = det_inputs[0]
    ref, fixed = _run(raw_det_onnx, x), _run(out, x)
    assert np.abs(ref - fixed).max() < 0.1
    assert elapsed < 120


@pytest.mark.slow
def test_repair_leaves_no_file_when_the_check_never_passes(
    raw_det_onnx, det_inputs, tmp_path
) -> None:
    out = tmp_path / "never.onnx"
    calls: list[Path] = []

    def never(candidate: Path) -> bool:
        calls.append(candidate)
        assert onnx.load(str(candidate)).graph.node  # a real, complete model is checked
        return False

    result = repair_fp16(
        raw_det_onnx, out, det_inputs[:1], never, max_rounds=1, keep_out_of_range_weights=False
    )
    assert not result.passed and result.onnx_path is None
    assert result.rounds == 1 and len(calls) == 2 and len(result.pinned_nodes) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_repair_of_the_converted_det_needs_no_pins(onnx_models, det_inputs, tmp_path) -> None:
    """The converter folds BatchNormalization: its det graph is fp16-safe as is (measured)."""
    source = onnx_models[ModelType.DETECTION].onnx_path
    result = repair_fp16(
        source, tmp_path / "det16.onnx", det_inputs, _det_check(source, det_inputs)
    )
    assert result.passed and result.rounds == 0 and result.pinned_nodes == []


@pytest.mark.slow
def test_everything_pinned_equals_fp32(onnx_models, det_inputs, tmp_path) -> None:
    source = onnx_models[ModelType.DETECTION].onnx_path
    names = [n.name for n in _load(source).graph.node]
    out = convert_to_fp16(source, tmp_path / "all32.onnx", keep_fp32_nodes=names)
    model = onnx.load(str(out))
    assert all(i.data_type != TensorProto.FLOAT16 for i in model.graph.initializer)
    assert not any(n.op_type == "Cast" for n in model.graph.node)
    x = det_inputs[0]
    assert np.abs(_run(out, x) - _run(source, x)).max() <= 1e-5


def _shape_and_resize_graph() -> onnx.ModelProto:
    """x -> Conv -> Resize(scales) -> Reshape(shape computed in float from Shape) -> y."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    eight = numpy_helper.from_array(np.array([8.0], np.float32), "eight")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["c", "", "scales"], ["r"], mode="nearest"),
        helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["sf", "eight"], ["sd"]),
        helper.make_node("Mul", ["sd", "eight"], ["sm"]),
        helper.make_node("Cast", ["sm"], ["si"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["r", "si"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "shape_and_resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight, scales, eight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_resize_scales_and_shape_arithmetic_stay_fp32(tmp_path) -> None:
    source = tmp_path / "g.onnx"
    onnx.save(_shape_and_resize_graph(), str(source))
    out = convert_to_fp16(source, tmp_path / "g16.onnx")
    model = onnx.load(str(out))
    types = {
        v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.output)
    }
    inits = {i.name: i.data_type for i in model.graph.initializer}
    assert inits == {
        "w": TensorProto.FLOAT16,
        "scales": TensorProto.FLOAT,
        "eight": TensorProto.FLOAT,
    }
    assert types["c"] == types["r"] == TensorProto.FLOAT16
    assert types["sd"] == types["sm"] == TensorProto.FLOAT  # shape arithmetic untouched
    assert types["y"] == TensorProto.FLOAT
    x = np.random.default_rng(1).standard_normal((1, 3, 24, 40)).astype(np.float32)
    ref, got = _run(source, x), _run(out, x)
    assert got.shape == ref.shape == (1, 4, 48, 80)
    assert relative_error(got, ref) < 1e-2


def test_bad_pin_name_raises_and_writes_nothing(tmp_path) -> None:
    source = tmp_path / "g.onnx"
    onnx.save(_shape_and_resize_graph(), str(source))
    with pytest.raises(ValueError, match="no_such_node"):
        convert_to_fp16(source, tmp_path / "g16.onnx", keep_fp32_nodes=["no_such_node"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]


def test_relative_error_flags_overflow() -> None:
    ref = np.ones((4, 4), np.float32)
    assert relative_error(ref, ref) == 0.0
    assert relative_error(np.full_like(ref, np.inf), ref) == float("inf")
    assert relative_error(ref * 1.5, ref) == pytest.approx(0.5)
