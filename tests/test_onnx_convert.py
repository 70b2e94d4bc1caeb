"""Paddle -> ONNX conversion on the real PP-OCRv4 models: formats, repairs, failures, clean-up."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from paddleocr_trt.backend.onnx.convert import (
    ConversionResult,
    convert_to_onnx,
    converter_versions,
)
from paddleocr_trt.backend.onnx.export_worker import export_with_repair
from paddleocr_trt.backend.onnx.pir_repair import narrow_f64_array_attributes
from paddleocr_trt.backend.onnx.repair import repair_model
from paddleocr_trt.errors import ConversionError, ModelDirError, UnsupportedModelTypeError
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.testing.models import OCRModelSet

# Which input axes must stay dynamic per model type (NCHW), and the fixed ones.
DYNAMIC_AXES = {
    ModelType.DETECTION: {0: "batch", 2: "height", 3: "width"},
    ModelType.RECOGNITION: {0: "batch", 3: "width"},
    ModelType.CLASSIFICATION: {0: "batch"},
}


def _results(request: pytest.FixtureRequest, fmt: str) -> dict[ModelType, ConversionResult]:
    return request.getfixturevalue("onnx_models" if fmt == "legacy" else "onnx_models_pir")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["legacy", "pir"])
@pytest.mark.parametrize("model_type", list(ModelType), ids=lambda t: t.value)
def test_converts_each_model_type_in_both_formats(
    request: pytest.FixtureRequest, fmt: str, model_type: ModelType
) -> None:
    result = _results(request, fmt)[model_type]
    assert result.onnx_path.is_file()
    assert result.model_type is model_type
    # Nothing but the published model files in the output dir: temp dirs are gone.
    assert sorted(p.name for p in result.onnx_path.parent.iterdir()) == sorted(
        f"{t.value}.onnx" for t in ModelType
    )
    model = onnx.load(str(result.onnx_path))
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}
    assert result.opset >= 17

    assert result.input_names == ["x"] == [i.name for i in model.graph.input]
    assert result.input_name == "x"
    assert result.output_names == [o.name for o in model.graph.output]
    assert len(result.output_names) == 1
    dims = result.input_shapes["x"]
    assert len(dims) == 4 and dims[1] == 3
    for axis, name in DYNAMIC_AXES[model_type].items():
        assert dims[axis] == name
    if model_type is ModelType.RECOGNITION:
        assert dims[2] == 48

    assert set(result.versions) >= {"paddle", "paddle2onnx", "onnx"}
    assert result.versions == converter_versions()
    assert 0 < result.seconds < 120
    assert result.smoke_max_abs_diff is not None and result.smoke_max_abs_diff < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["legacy", "pir"])
def test_scalar_concat_repair_is_applied_and_recorded(
    request: pytest.FixtureRequest, fmt: str
) -> None:
    results = _results(request, fmt)
    rec_repairs = results[ModelType.RECOGNITION].repairs
    # PP-OCRv4 rec builds five reshape targets from a 0-D batch size and 1-D literals.
    assert len(rec_repairs) == 5
    assert all(r.startswith("scalar-concat: ") for r in rec_repairs)
    assert any("scalar-concat" in r for r in results[ModelType.CLASSIFICATION].repairs)
    assert results[ModelType.DETECTION].repairs == []


def _scalar_concat_reshape_model(opset: int) -> onnx.ModelProto:
    """x[N,2,3] -> reshape to concat([1], shape(x)[0] (0-D), [6]): paddle2onnx's pattern."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),  # 0-D
        helper.make_node("Concat", ["one", "batch", "six"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "scalar_concat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "n", 6])],
        initializer=[
            numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
            numpy_helper.from_array(np.array([6], dtype=np.int64), "six"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [11, 17])
def test_repair_pass_makes_rejected_graph_valid_and_correct(tmp_path: Path, opset: int) -> None:
    model = _scalar_concat_reshape_model(opset)
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    with pytest.raises(Exception, match="must have same rank"):
        ort.InferenceSession(str(broken), providers=["CPUExecutionProvider"])

    repairs = repair_model(model)
    assert [r.pass_name for r in repairs] == ["scalar-concat"]
    assert repair_model(model) == []  # idempotent: nothing left to fix
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    session = ort.InferenceSession(str(fixed), providers=["CPUExecutionProvider"])
    x = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_array_equal(y, x.reshape(1, 5, 6))


def _as_paddle_331_translates(program: object) -> int:
    """Write nearest_interp scales as float64, the one difference (besides the format version)
    between paddle 3.3.1's and 3.2.2's translation of the legacy det program (seen by diffing
    both outputs); returns how many arrays it changed."""
    changed = 0
    if isinstance(program, dict):
        if program.get("#") == "1.nearest_interp":
            for attribute in program["A"]:
                if attribute["N"] == "scale":
                    for element in attribute["AT"]["D"]:
                        element["#"] = "0.a_f64"
                    changed += 1
        for value in program.values():
            changed += _as_paddle_331_translates(value)
    elif isinstance(program, list):
        for value in program:
            changed += _as_paddle_331_translates(value)
    return changed


def test_pir_repair_narrows_float64_scale_arrays(ocr_models_pir: OCRModelSet) -> None:
    original = json.loads((ocr_models_pir.det / "inference.json").read_text(encoding="utf-8"))
    assert narrow_f64_array_attributes(copy.deepcopy(original)) == {}  # 3.2.2 output: no-op
    broken = copy.deepcopy(original)
    assert _as_paddle_331_translates(broken) == 6
    assert narrow_f64_array_attributes(broken) == {"nearest_interp.scale": 6}
    assert broken == original


@pytest.mark.slow
def test_export_retries_with_repaired_pir_program(
    ocr_models_pir: OCRModelSet, onnx_models: dict[ModelType, ConversionResult], tmp_path: Path
) -> None:
    from paddleocr_trt.backend.onnx.export_worker import _export

    program = json.loads((ocr_models_pir.det / "inference.json").read_text(encoding="utf-8"))
    _as_paddle_331_translates(program)
    broken = tmp_path / "det.json"
    broken.write_text(json.dumps(program), encoding="utf-8")
    params = ocr_models_pir.det / "inference.pdiparams"
    with pytest.raises(RuntimeError, match="FloatAttribute"):
        _export(broken, params, tmp_path / "plain.onnx", 17)

    repairs = export_with_repair(broken, params, tmp_path / "det.onnx", 17, tmp_path)
    assert repairs == [
        "pir-f64-array-attrs: float64 array attributes narrowed to float32 "
        "(nearest_interp.scale x6)"
    ]
    x = np.random.default_rng(3).uniform(-2, 2, (1, 3, 160, 224)).astype(np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    (repaired,) = ort.InferenceSession(
        str(tmp_path / "det.onnx"), options, providers=["CPUExecutionProvider"]
    ).run(None, {"x": x})
    (reference,) = ort.InferenceSession(
        str(onnx_models[ModelType.DETECTION].onnx_path), providers=["CPUExecutionProvider"]
    ).run(None, {"x": x})
    np.testing.assert_allclose(repaired, reference, rtol=0, atol=1e-5)


def _assert_failure(
    excinfo: pytest.ExceptionInfo[ConversionError], model_dir: Path, kind: str, step: str
) -> None:
    message = str(excinfo.value)
    versions = converter_versions()
    assert str(model_dir) in message
    assert kind in message
    assert f"step '{step}'" in message
    for key in ("paddle", "paddle2onnx", "onnx"):
        assert f"{key} {versions[key]}" in message


def _all_entries(directory: Path) -> list[str]:
    """Everything below ``directory``, hidden temp dirs included."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.mark.slow
def test_truncated_program_fails_at_translate_and_leaves_nothing(
    ocr_models: OCRModelSet, tmp_path: Path
) -> None:
    source = ocr_models.rec
    bad = tmp_path / "truncated_rec"
    bad.mkdir()
    shutil.copy2(source / "inference.pdiparams", bad / "inference.pdiparams")
    program = (source / "inference.pdmodel").read_bytes()
    (bad / "inference.pdmodel").write_bytes(program[: len(program) // 3])
    out_dir = tmp_path / "out"

    with pytest.raises(ConversionError) as excinfo:
        convert_to_onnx(bad, out_dir / "rec.onnx", "rec")
    _assert_failure(excinfo, bad, "recognition", "translate")
    assert _all_entries(out_dir) == []


@pytest.mark.slow
def test_corrupt_pir_program_fails_at_export(ocr_models_pir: OCRModelSet, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt_cls"
    bad.mkdir()
    shutil.copy2(ocr_models_pir.cls / "inference.pdiparams", bad / "inference.pdiparams")
    (bad / "inference.json").write_text('{"base_code": {"magic": "pir"}, "program": {}}')
    out_dir = tmp_path / "out"

    with pytest.raises(ConversionError) as excinfo:
        convert_to_onnx(bad, out_dir / "cls.onnx", ModelType.CLASSIFICATION)
    _assert_failure(excinfo, bad, "classification", "export")
    assert _all_entries(out_dir) == []


@pytest.mark.slow
def test_truncated_weights_are_caught_by_the_paddle_reference(
    ocr_models_pir: OCRModelSet, tmp_path: Path
) -> None:
    # paddle2onnx 2.1.0 exports this without complaint; only running the model exposes it.
    bad = tmp_path / "truncated_weights_cls"
    bad.mkdir()
    shutil.copy2(ocr_models_pir.cls / "inference.json", bad / "inference.json")
    params = (ocr_models_pir.cls / "inference.pdiparams").read_bytes()
    (bad / "inference.pdiparams").write_bytes(params[: len(params) // 5])
    out_dir = tmp_path / "out"

    with pytest.raises(ConversionError) as excinfo:
        convert_to_onnx(bad, out_dir / "cls.onnx", "cls")
    _assert_failure(excinfo, bad, "classification", "reference")
    assert _all_entries(out_dir) == []


def test_timeout_kills_the_child_and_leaves_nothing(
    ocr_models: OCRModelSet, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    with pytest.raises(ConversionError) as excinfo:
        convert_to_onnx(ocr_models.det, out_dir / "det.onnx", "det", timeout_s=0.001)
    _assert_failure(excinfo, ocr_models.det, "detection", "timeout")
    assert "killed" in str(excinfo.value)
    assert _all_entries(out_dir) == []


def test_existing_output_is_untouched_when_conversion_fails(
    ocr_models: OCRModelSet, tmp_path: Path
) -> None:
    target = tmp_path / "det.onnx"
    target.write_bytes(b"previous good model")
    with pytest.raises(ConversionError):
        convert_to_onnx(ocr_models.det, target, "det", timeout_s=0.001)
    assert target.read_bytes() == b"previous good model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.onnx"]


@pytest.mark.slow
def test_relative_model_dir_and_output_path(
    ocr_models: OCRModelSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ocr_models.cls.parent)
    relative_out = os.path.relpath(tmp_path / "rel" / "cls.onnx")
    result = convert_to_onnx(ocr_models.cls.name, relative_out, "cls")
    assert result.onnx_path == (tmp_path / "rel" / "cls.onnx").resolve()
    assert result.onnx_path.is_file()
    assert [p.name for p in (tmp_path / "rel").iterdir()] == ["cls.onnx"]


def test_bad_model_dirs_raise_model_dir_error(ocr_models: OCRModelSet, tmp_path: Path) -> None:
    out = tmp_path / "out" / "m.onnx"
    with pytest.raises(ModelDirError, match="does not exist"):
        convert_to_onnx(tmp_path / "missing", out, "det")

    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy2(ocr_models.det / "inference.pdmodel", no_weights / "inference.pdmodel")
    with pytest.raises(ModelDirError, match="no weights"):
        convert_to_onnx(no_weights, out, "det")

    not_paddle = tmp_path / "not_paddle"
    not_paddle.mkdir()
    (not_paddle / "model.onnx").write_bytes(b"\x08\x07")
    (not_paddle / "README.txt").write_text("hello")
    with pytest.raises(ModelDirError, match="not a Paddle inference model"):
        convert_to_onnx(not_paddle, out, "det")

    a_file = tmp_path / "file.pdmodel"
    a_file.write_bytes(b"x")
    with pytest.raises(ModelDirError, match="not a directory"):
        convert_to_onnx(a_file, out, "det")
    assert not out.parent.exists()


def test_output_path_that_is_a_directory_is_rejected(
    ocr_models: OCRModelSet, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        convert_to_onnx(ocr_models.det, tmp_path, "det")
    assert os.listdir(tmp_path) == []


def test_unknown_model_type_is_rejected(ocr_models: OCRModelSet, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelTypeError, match="table"):
        convert_to_onnx(ocr_models.det, tmp_path / "m.onnx", "table")
    assert os.listdir(tmp_path) == []
