"""The DB bitmap inside the det graph, the resident map and the DB post-processing fed by them.

Real components: the converted PP-OCRv4 det model fused as the engines get it, ONNX Runtime,
real rendered pages, PaddleX's own ``DBPostProcess`` as the reference (boxes AND scores,
compared exactly, in every mode it has).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from paddleocr_trt.backend.onnx.fuse_db import (
    DB_BITMAP_OUTPUT,
    DB_THRESH_INPUT,
    append_db_bitmap,
    db_thresh_input,
    unpack_db_bitmap,
)
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.postprocess.resident import HostResidentMap, ImageWindows, take_rows


def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _identity_map_graph(opset: int) -> onnx.ModelProto:
    """A graph whose output is its input (N, 1, H, W): feeds chosen values to the binariser."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, "h", "w"])
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["n", 1, "h", "w"])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["prob"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [11, 17, 18])
def test_bitmap_is_numpys_comparison_bit_for_bit_ties_included(opset: int) -> None:
    """Values equal to the float32 threshold, one ulp either side, 0, 1 and NaN: the packed
    bitmap is ``np.packbits(map > thresh)`` with the threshold a Python float, as in PaddleX."""
    session = _session(append_db_bitmap(_identity_map_graph(opset)))
    rng = np.random.default_rng(7)
    for thresh in (0.3, 0.1, 0.6, 0.7):
        t32 = np.float32(thresh)
        specials = np.array(
            [t32, np.nextafter(t32, 1), np.nextafter(t32, 0), 0, 1, np.nan, thresh], np.float32
        )
        for n, h, w in ((1, 3, 8), (2, 5, 32), (3, 4, 96)):
            prob = rng.choice(
                np.concatenate([specials, rng.random(32).astype(np.float32)]), (n, 1, h, w)
            ).astype(np.float32)
            got_prob, packed = session.run(
                None, {"x": prob, DB_THRESH_INPUT: db_thresh_input(thresh, n)}
            )
            assert np.array_equal(got_prob, prob, equal_nan=True)
            assert packed.dtype == np.uint8 and packed.shape == (n, 1, h, w // 8)
            assert np.array_equal(unpack_db_bitmap(packed), prob > thresh)
            assert np.array_equal(packed, np.packbits(prob > thresh, axis=-1))


def test_each_image_of_a_batch_has_its_own_threshold() -> None:
    session = _session(append_db_bitmap(_identity_map_graph(17)))
    prob = np.full((2, 1, 2, 8), 0.5, np.float32)
    thresholds = np.array([0.4, 0.6], np.float32)
    _, packed = session.run(None, {"x": prob, DB_THRESH_INPUT: thresholds})
    assert unpack_db_bitmap(packed)[0].all() and not unpack_db_bitmap(packed)[1].any()


def test_graphs_it_cannot_fuse_are_refused() -> None:
    model = _identity_map_graph(17)
    with pytest.raises(ValueError, match="fused twice"):
        append_db_bitmap(append_db_bitmap(model))
    two = helper.make_model(
        helper.make_graph(
            [
                helper.make_node("Identity", ["x"], ["a"]),
                helper.make_node("Identity", ["x"], ["b"]),
            ],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 8, 8]) for n in "ab"],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    with pytest.raises(ValueError, match="one output"):
        append_db_bitmap(two)
    rank3 = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        append_db_bitmap(rank3)


def test_resident_map_windows_are_exact_counted_and_checked() -> None:
    rng = np.random.default_rng(1)
    array = rng.random((2, 1, 40, 64)).astype(np.float32)
    seen: list[int] = []
    resident = HostResidentMap(array, on_fetch=seen.append)
    assert resident.nbytes == 0 and resident.shape == (2, 1, 40, 64)
    window = resident.window(1, 0, 5, 17, 3, 60)
    assert np.array_equal(window, array[1, 0, 5:17, 3:60]) and window.flags.owndata
    assert resident.fetched_bytes == window.nbytes == seen[0]
    for bad in ((2, 0, 0, 1, 0, 1), (0, 1, 0, 1, 0, 1), (0, 0, 5, 5, 0, 1), (0, 0, 0, 41, 0, 1)):
        with pytest.raises(ValueError, match="outside the resident map"):
            resident.window(*bad)
    image = ImageWindows(take_rows(resident, 1, 1), 0)
    assert image.shape == (40, 64)
    assert np.array_equal(image[2:9, 10:20], array[1, 0, 2:9, 10:20])
    assert np.array_equal(image[0:100, 60:], array[1, 0, :, 60:])  # clipped like numpy
    with pytest.raises(TypeError):
        image[3, 4]
    with pytest.raises(TypeError):
        image[0:10:2, 0:4]
    assert np.array_equal(take_rows(array, 1, 1), array[1:2])
    resident.release()
    with pytest.raises(RuntimeError, match="after release"):
        resident.window(0, 0, 0, 1, 0, 1)


@pytest.fixture(scope="module")
def det_maps(ocr_models, onnx_models, sample_images):
    """(prob map, packed bitmap, thresh, img_shape) per real page, from the fused det graph
    on ONNX Runtime, fed by PaddleX's own det resize."""
    from paddleocr_trt.comparator.fused import build_fused_pairs
    from paddleocr_trt.fusion.graphs import fuse_model

    det_dir = ocr_models.dir_for(ModelType.DETECTION)
    fused = fuse_model(
        "detection", onnx.load(str(onnx_models[ModelType.DETECTION].onnx_path)), det_dir
    )
    assert [o.name for o in fused.graph.output][1] == DB_BITMAP_OUTPUT
    session = _session(fused)
    images = [
        s.path
        for s in sample_images
        if s.name in ("english_document", "rotated_180", "chinese_lines")
    ]
    pairs = build_fused_pairs(ModelType.DETECTION, images, model_dir=det_dir)
    out = []
    for pair in pairs[:4]:
        for thresh in (0.3, 0.2):
            feed = {"image_uint8": pair.fused, DB_THRESH_INPUT: db_thresh_input(thresh, 1)}
            prob, packed = session.run(None, feed)
            h, w = prob.shape[2:]
            out.append((prob, packed, thresh, np.array([h, w, 1.0, 1.0])))
    assert out
    return out


def _resident(kind: str, prob: np.ndarray, seen: list[int]):
    """The map as an engine keeps it: a host array, or an OrtValue inside ONNX Runtime."""
    if kind == "host":
        return HostResidentMap(prob.copy(), on_fetch=seen.append)
    import onnxruntime as ort

    from paddleocr_trt.engines.onnxruntime.resident import OrtResidentMap

    value = ort.OrtValue.ortvalue_from_numpy(prob.copy())
    return OrtResidentMap(value, _sum_session(), on_fetch=seen.append)


_SESSIONS: list = []


def _sum_session():
    from paddleocr_trt.engines.onnxruntime.resident import MaskedSumSession

    if not _SESSIONS:
        _SESSIONS.append(MaskedSumSession())
    return _SESSIONS[0]


@pytest.mark.parametrize("kind", ["host", "onnxruntime"])
@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"use_dilation": True},
        {"score_mode": "slow"},
        {"box_type": "poly"},
        {"box_thresh": 0.4, "unclip_ratio": 1.2},
    ],
    ids=["default", "dilation", "slow-score", "poly", "low-box-thresh"],
)
def test_db_postprocess_over_bitmap_and_resident_map_equals_paddlex_exactly(
    det_maps, settings, kind
):
    """Boxes and scores equal PaddleX's own DBPostProcess on the whole map, as doubles; the
    host gets the bitmap, 8 bytes a box score and the one window that checks the first."""
    from paddlex.inference.models.text_detection.processors import DBPostProcess

    from paddleocr_trt.postprocess.db import BitmapDBPostProcess

    settings = dict(settings)
    box_thresh = settings.pop("box_thresh", 0.6)
    unclip = settings.pop("unclip_ratio", 1.5)
    checked = 0
    post = None
    for prob, packed, thresh, shape in det_maps:
        stock = DBPostProcess(thresh=thresh, box_thresh=box_thresh, unclip_ratio=unclip, **settings)
        want_boxes, want_scores = stock([prob], [shape], thresh, box_thresh, unclip)
        seen: list[int] = []
        post = BitmapDBPostProcess(stock)
        got_boxes, got_scores = post(
            [_resident(kind, prob, seen), packed], [shape], thresh, box_thresh, unclip
        )
        assert len(got_boxes[0]) == len(want_boxes[0])
        for got, want in zip(got_boxes[0], want_boxes[0], strict=True):
            assert np.array_equal(np.asarray(got), np.asarray(want))
        assert got_scores == want_scores  # the same doubles, not merely close
        assert not post.read_windows
        checked += len(want_boxes[0])
        if kind == "onnxruntime" and len(want_boxes[0]):
            # 8 bytes per score asked for (one call), then one window: the first score's check
            sums, window = seen
            assert sums % 8 == 0 and sums >= 8 * len(want_boxes[0])
            assert window % 4 == 0 and sums + window < prob.nbytes / 2, seen
    assert checked >= 10


def test_a_whole_map_goes_to_paddlex_unchanged(det_maps) -> None:
    """Native Paddle after a fallback returns the map alone: stock post-processing runs."""
    from paddlex.inference.models.text_detection.processors import DBPostProcess

    from paddleocr_trt.postprocess.db import BitmapDBPostProcess

    prob, _packed, thresh, shape = det_maps[0]
    stock = DBPostProcess(thresh=thresh, box_thresh=0.6, unclip_ratio=1.5)
    want = stock([prob], [shape])
    got = BitmapDBPostProcess(stock)([prob], [shape])
    assert [b.tolist() for b in got[0]] == [b.tolist() for b in want[0]] and got[1] == want[1]
