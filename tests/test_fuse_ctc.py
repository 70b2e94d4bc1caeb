"""Rec argmax in the graph (issue 11 item 1): the fused graph and the (index, prob) decoder must
give exactly what PaddleX's ``CTCLabelDecode`` gives on the full softmax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from paddleocr_trt.backend.onnx.fuse import (
    CTC_INDEX_OUTPUT,
    CTC_PROB_OUTPUT,
    append_ctc_argmax,
)
from paddleocr_trt.comparator.inputs import build_validation_inputs
from paddleocr_trt.engines.onnxruntime.runner import OnnxRuntimeRunner
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.postprocess.ctc import ArgmaxCTCDecoder


def _softmax_passthrough(tmp: Path, opset: int, classes: int = 7) -> onnx.ModelProto:
    """A graph whose output is its input: feeds chosen 'softmax' values to the fused tail."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "t", classes])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "t", classes])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "p", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("index_dtype", ["int32", "int64"])
def test_argmax_ties_follow_numpy_first_index(tmp_path: Path, opset: int, index_dtype: str) -> None:
    fused = append_ctc_argmax(_softmax_passthrough(tmp_path, opset), index_dtype=index_dtype)
    path = tmp_path / "fused.onnx"
    onnx.save(fused, str(path))
    values = np.zeros((3, 5, 7), np.float32)
    values[0, 0] = 0.25  # every class tied
    values[0, 1, [2, 5]] = 0.5  # two-way tie, first wins
    values[0, 2, [0, 6]] = 0.4  # blank tied with the last class
    values[1] = np.random.default_rng(0).random((5, 7), dtype=np.float32)
    values[1, 3, [1, 4]] = 2.0
    values[2, :, [3, 6]] = 0.5  # ties on every step
    runner = OnnxRuntimeRunner(path)
    indices, probs = runner([values])
    assert runner.output_names == [CTC_INDEX_OUTPUT, CTC_PROB_OUTPUT]
    assert indices.dtype == np.dtype(index_dtype)
    np.testing.assert_array_equal(indices, values.argmax(axis=-1))
    np.testing.assert_array_equal(probs, values.max(axis=-1))
    assert indices[0, 1] == 2 and indices[0, 2] == 0 and indices[1, 3] == 1


def test_append_refuses_wrong_graphs(tmp_path: Path) -> None:
    model = _softmax_passthrough(tmp_path, 17)
    fused = append_ctc_argmax(model)
    with pytest.raises(ValueError, match="one output"):
        append_ctc_argmax(fused)
    with pytest.raises(ValueError, match="index_dtype"):
        append_ctc_argmax(model, index_dtype="float32")
    flat = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "flat",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 7])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 7])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    with pytest.raises(ValueError, match="rank 3"):
        append_ctc_argmax(flat)
    assert len(model.graph.output) == 1 and model.graph.output[0].name == "y"  # input untouched


# -- the real rec model on real crops ----------------------------------------------------------


@pytest.fixture(scope="module")
def rec_runners(onnx_models, tmp_path_factory):
    source = onnx_models[ModelType.RECOGNITION].onnx_path
    fused_path = tmp_path_factory.mktemp("fused_rec") / "rec.argmax.onnx"
    onnx.save(append_ctc_argmax(onnx.load(str(source))), str(fused_path))
    full, fused = OnnxRuntimeRunner(source), OnnxRuntimeRunner(fused_path)
    yield full, fused
    full.close()
    fused.close()


@pytest.fixture(scope="module")
def rec_batches(ocr_models, sample_images) -> list[np.ndarray]:
    """Real crops of the rendered pages, resized and batched by PaddleX's own processors."""
    images = [
        s.path
        for s in sample_images
        if s.name in ("english_document", "chinese_lines", "long_line", "grayscale")
    ]
    return build_validation_inputs(
        ModelType.RECOGNITION, images, model_dir=ocr_models.rec, batch_sizes=(1, 6)
    )


@pytest.fixture(scope="module")
def paddlex_ctc(ocr_models):
    import yaml
    from paddlex.inference.models.text_recognition.processors import CTCLabelDecode

    config = yaml.safe_load((ocr_models.rec / "inference.yml").read_text(encoding="utf-8"))
    return CTCLabelDecode(character_list=config["PostProcess"]["character_dict"])


def test_fused_rec_matches_ctclabeldecode_on_real_crops(
    rec_runners, rec_batches, paddlex_ctc
) -> None:
    full, fused = rec_runners
    decoder = ArgmaxCTCDecoder(paddlex_ctc.character)
    texts_seen: list[str] = []
    for x in rec_batches:
        softmax = full([x])
        indices, probs = fused([x])
        assert indices.shape == probs.shape == softmax[0].shape[:2]
        np.testing.assert_array_equal(indices, softmax[0].argmax(axis=-1))
        np.testing.assert_array_equal(probs, softmax[0].max(axis=-1))
        want_texts, want_scores = paddlex_ctc(softmax)
        got_texts, got_scores = decoder([indices, probs])
        assert got_texts == want_texts
        assert got_scores == want_scores  # bit-identical floats
        texts_seen.extend(want_texts)
        # word boxes, with the ratios the rec predictor passes
        ratios = [1.0 + 0.5 * i for i in range(x.shape[0])]
        kwargs = {"wh_ratio_list": ratios, "max_wh_ratio": max(ratios) + 1.0}
        want = paddlex_ctc(softmax, return_word_box=True, **kwargs)
        got = decoder([indices, probs], return_word_box=True, **kwargs)
        assert got == want
        # an unfused engine's one softmax output is decoded the same way
        assert decoder(softmax) == paddlex_ctc(softmax)
    assert any("Invoice" in t for t in texts_seen)  # real text was read, not blanks
    assert any("中文" in t for t in texts_seen)


def test_output_bytes_shrink(rec_runners, rec_batches) -> None:
    full, fused = rec_runners
    x = max(rec_batches, key=lambda b: b.shape[0] * b.shape[3])
    full_bytes = sum(o.nbytes for o in full([x]))
    fused_bytes = sum(o.nbytes for o in fused([x]))
    assert full_bytes == fused_bytes * 6625 // 2  # (4 B x 6625 classes) vs (4 B + 4 B)


def test_fuse_after_fp16_conversion_reads_the_fp32_output(onnx_models, rec_batches) -> None:
    """Fusing after the fp16 pass puts ArgMax/ReduceMax on its fp32 output (keep_io_types)."""
    from paddleocr_trt.backend.onnx.fp16 import convert_model_to_fp16

    half = convert_model_to_fp16(onnx.load(str(onnx_models[ModelType.RECOGNITION].onnx_path)))
    fused = append_ctc_argmax(half)
    assert fused.graph.node[-1].op_type == "ReduceMax"
    import onnxruntime as ort

    plain = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"])
    tail = ort.InferenceSession(fused.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rec_batches[0]
    softmax = plain.run(None, {"x": x})[0]
    indices, probs = tail.run(None, {"x": x})
    assert softmax.dtype == probs.dtype == np.float32
    np.testing.assert_array_equal(indices, softmax.argmax(axis=-1))
    np.testing.assert_array_equal(probs, softmax.max(axis=-1))


# -- the decoder against PaddleX's decode on constructed index sequences ----------------------


def test_decoder_matches_paddlex_on_constructed_sequences(paddlex_ctc) -> None:
    chars = paddlex_ctc.character
    pick = {c: chars.index(c) for c in ["中", "文", "A", "b", "7", "1", ".", "-", "(", " ", "5"]}
    rows = [
        ["A", "A", 0, "A", "b", ".", "7", "-", "1", " ", "中", "中", "文", "(", "5", 0],
        [0] * 16,  # all blank: score 0.0
        ["7", ".", ".", "1", "-", "-", "b", 0, 0, "(", "(", ".", "5", "中", 0, "文"],
        ["-", "A", ".", "b", ".", 0, " ", " ", "7", ".", "A", "中", ".", "1", "1", "1"],
    ]
    indices = np.array([[pick.get(c, c) for c in row] for row in rows], dtype=np.int32)
    rng = np.random.default_rng(1)
    probs = rng.random(indices.shape, dtype=np.float32)
    want = paddlex_ctc.decode(indices, probs, is_remove_duplicate=True, return_word_box=True)
    got = ArgmaxCTCDecoder(chars).decode(indices, probs, return_word_box=True)
    assert got == want
    assert got[1][1] == 0.0


def test_decoder_refuses_bad_outputs(paddlex_ctc) -> None:
    decoder = ArgmaxCTCDecoder(paddlex_ctc.character)
    probs = np.ones((1, 4), np.float32)
    with pytest.raises(ValueError, match="out of range"):
        decoder([np.array([[0, 1, 99999, 2]]), probs])
    with pytest.raises(TypeError, match="integers"):
        decoder([probs, probs])
    with pytest.raises(ValueError, match=r"\(N, T\)"):
        decoder([np.zeros((1, 3), np.int64), probs])
    with pytest.raises(ValueError, match="expected"):
        decoder([probs])
    assert ArgmaxCTCDecoder.from_dictionary(["a", "b"]).character == ["blank", "a", "b", " "]
