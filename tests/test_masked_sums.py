"""DB box scores summed where the det map lives (``ResidentMap.masked_sums``).

The reference is ``cv2.mean`` itself: ``masked_sum_of`` must be its accumulation, and every
engine side must equal ``masked_sum_of`` bit for bit. Real components: OpenCV (with and without
IPP), ONNX Runtime sessions over real OrtValues, PaddleX's DBPostProcess.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from paddleocr_trt.backend.onnx.fuse_db import append_db_bitmap
from paddleocr_trt.engines.onnxruntime.resident import (
    MAX_PADDING,
    MaskedSumSession,
    OrtResidentMap,
    padded_groups,
)
from paddleocr_trt.postprocess.resident import (
    HostResidentMap,
    MaskedWindow,
    masked_mean,
    masked_sum_of,
    pack_masked_windows,
    take_rows,
)


def _sigmoid_map(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Probabilities like a DB head's: most near 0 (down to ~1e-30) or near 1."""
    return (1.0 / (1.0 + np.exp(-rng.normal(0.0, 25.0, shape)))).astype(np.float32)


def _quad_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A mask drawn the way PaddleX's box_score_fast draws it: fillPoly of a 4-point box."""
    mask = np.zeros((h, w), np.uint8)
    pts = np.stack([rng.uniform(-1, w, 4), rng.uniform(-1, h, 4)], axis=1)
    cv2.fillPoly(mask, pts.reshape(1, -1, 2).astype(np.int32), 1)
    return mask


def _windows(rng: np.random.Generator, shape: tuple[int, ...], count: int) -> list[MaskedWindow]:
    n, c, h, w = shape
    out = []
    for k in range(count):
        wh = int(rng.integers(1, min(h, 90) + 1))
        ww = int(rng.integers(1, min(w, 700) + 1))
        y0 = int(rng.integers(0, h - wh + 1))
        x0 = int(rng.integers(0, w - ww + 1))
        if k % 3 == 0:
            mask = _quad_mask(rng, wh, ww)
        else:
            mask = (rng.random((wh, ww)) < rng.random()).astype(np.uint8)
        out.append(MaskedWindow(int(rng.integers(n)), int(rng.integers(c)), y0, x0, mask))
    # the edges, a single pixel, an empty mask, a mask of 0/255 values, then (for maps that
    # hold -0.0 there) a window whose masked values are all -0.0
    out.append(MaskedWindow(n - 1, c - 1, h - 7, w - 9, np.ones((7, 9), np.uint8)))
    out.append(MaskedWindow(0, 0, 0, 0, np.ones((h, w), np.uint8)))
    out.append(MaskedWindow(0, 0, 3, 4, np.ones((1, 1), np.uint8)))
    out.append(MaskedWindow(0, 0, 3, 4, np.zeros((5, 5), np.uint8)))
    out.append(MaskedWindow(0, 0, 1, 2, (np.eye(6, 8, dtype=np.uint8) * 255)))
    return out


@pytest.mark.parametrize("ipp", [True, False], ids=["ipp", "no-ipp"])
def test_reference_is_what_cv2_mean_computes(ipp: bool) -> None:
    """``masked_mean(masked_sum_of(...))`` is ``cv2.mean(window, mask)[0]`` exactly; a
    pairwise (numpy) sum is not, so the order is what matters."""
    rng = np.random.default_rng(3)
    before = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(ipp)
    try:
        plane = _sigmoid_map(rng, (300, 1200))
        pairwise_differs = 0
        windows = _windows(rng, (1, 1, 300, 1200), 400)
        for win in windows:
            h, w = win.mask.shape
            window = plane[win.y0 : win.y0 + h, win.x0 : win.x0 + w]
            want = cv2.mean(window, win.mask)[0]
            assert masked_mean(masked_sum_of(plane, win), win.count) == want
            values = window[win.mask != 0].astype(np.float64)
            pairwise_differs += values.size > 0 and values.sum() * (1.0 / values.size) != want
        assert pairwise_differs > 20
    finally:
        cv2.ipp.setUseIPP(before)


def _ort_map(array: np.ndarray, seen: list[int] | None = None) -> OrtResidentMap:
    import onnxruntime as ort

    value = ort.OrtValue.ortvalue_from_numpy(array)
    return OrtResidentMap(value, MaskedSumSession(), on_fetch=None if seen is None else seen.append)


def test_onnxruntime_sums_are_the_reference_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    shape = (2, 2, 120, 336)
    array = _sigmoid_map(rng, shape)
    windows = _windows(rng, shape, 80)
    # NaN and inf where no mask looks must not leak into any sum
    poisoned = array.copy()
    covered = np.zeros(shape, bool)
    for win in windows:
        h, w = win.mask.shape
        covered[win.b, win.c, win.y0 : win.y0 + h, win.x0 : win.x0 + w] |= win.mask != 0
    poisoned[~covered] = np.where(rng.random((~covered).sum()) < 0.5, np.nan, np.inf)

    negative_zero = MaskedWindow(1, 0, 100, 300, np.ones((3, 4), np.uint8))
    windows.append(negative_zero)
    array[1, 0, 100:103, 300:304] = -0.0
    poisoned[1, 0, 100:103, 300:304] = -0.0
    seen: list[int] = []
    resident = _ort_map(poisoned, seen)
    got = resident.masked_sums(windows)
    want = np.array([masked_sum_of(array[w.b, w.c], w) for w in windows])
    assert got.dtype == np.float64 and np.array_equal(got.view(np.int64), want.view(np.int64))
    assert np.signbit(got[-1]) == np.signbit(cv2.mean(np.full((3, 4), -0.0, np.float32))[0])
    assert seen == [8 * len(windows)] and resident.fetched_bytes == 8 * len(windows)
    assert resident.nbytes == 0
    # windows are sliced inside ONNX Runtime too
    got_window = resident.window(1, 1, 5, 50, 7, 300)
    assert np.array_equal(got_window, poisoned[1, 1, 5:50, 7:300], equal_nan=True)
    assert seen[-1] == 45 * 293 * 4
    # a slice of the batch (a stacked det call split per image) shifts b
    rows = take_rows(resident, 1, 1)
    one = [MaskedWindow(0, w.c, w.y0, w.x0, w.mask) for w in windows if w.b == 1]
    assert np.array_equal(rows.masked_sums(one), want[[w.b == 1 for w in windows]])
    assert resident.masked_sums([]).shape == (0,)


def test_host_map_sums_the_same_and_counts_what_it_read() -> None:
    rng = np.random.default_rng(6)
    array = _sigmoid_map(rng, (1, 1, 64, 200))
    windows = _windows(rng, array.shape, 20)
    seen: list[int] = []
    host = HostResidentMap(array, on_fetch=seen.append)
    got = host.masked_sums(windows)
    ort_got = _ort_map(array).masked_sums(windows)
    assert np.array_equal(got.view(np.int64), ort_got.view(np.int64))
    assert seen == [4 * sum(w.count for w in windows)]


def test_bad_windows_and_released_maps_are_refused() -> None:
    array = np.zeros((1, 1, 10, 16), np.float32)
    for resident in (_ort_map(array), HostResidentMap(array)):
        with pytest.raises(ValueError, match="outside the resident map"):
            resident.masked_sums([MaskedWindow(0, 0, 5, 10, np.ones((6, 2), np.uint8))])
        with pytest.raises(ValueError, match="outside the resident map"):
            resident.masked_sums([MaskedWindow(1, 0, 0, 0, np.ones((1, 1), np.uint8))])
        with pytest.raises(ValueError, match="2-D uint8"):
            resident.masked_sums([MaskedWindow(0, 0, 0, 0, np.ones((2, 2), np.float32))])
        resident.release()
        with pytest.raises(RuntimeError, match="after release"):
            resident.masked_sums([MaskedWindow(0, 0, 0, 0, np.ones((1, 1), np.uint8))])


def test_padding_groups_cover_every_window_once_within_the_bound() -> None:
    rng = np.random.default_rng(8)
    counts = [int(c) for c in rng.integers(0, 50_000, 300)] + [0, 0, 1]
    groups = padded_groups(counts)
    assert sorted(k for g in groups for k in g) == list(range(len(counts)))
    for group in groups:
        longest = counts[group[0]]
        assert longest == max(counts[k] for k in group)
        assert len(group) * longest * (1 - MAX_PADDING) <= sum(counts[k] for k in group) or (
            len(group) == 1
        )
    assert len(groups) < len(counts) / 10


def test_packed_masks_unpack_to_the_masks() -> None:
    rng = np.random.default_rng(9)
    windows = _windows(rng, (2, 1, 50, 70), 12)
    meta, bits = pack_masked_windows(windows)
    assert meta.shape == (len(windows), 7)
    for row, win in zip(meta, windows, strict=True):
        b, c, y0, x0, h, w, offset = (int(v) for v in row)
        assert (b, c, y0, x0, (h, w)) == (win.b, win.c, win.y0, win.x0, win.mask.shape)
        nbytes = (h * w + 7) // 8
        unpacked = np.unpackbits(bits[offset : offset + nbytes])[: h * w].reshape(h, w)
        assert np.array_equal(unpacked, win.mask != 0)
    assert int(meta[-1, 6]) + (int(meta[-1, 4] * meta[-1, 5]) + 7) // 8 == bits.size


def _identity_det_graph(tmp_path) -> str:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, "h", "w"])
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["n", 1, "h", "w"])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["prob"])], "g", [x], [y])
    model = append_db_bitmap(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    path = tmp_path / "det.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_onnxruntime_runner_keeps_the_resident_output_in_onnxruntime(tmp_path) -> None:
    from paddleocr_trt.backend.onnx.fuse_db import db_thresh_input
    from paddleocr_trt.engines.onnxruntime.runner import OnnxRuntimeRunner

    path = _identity_det_graph(tmp_path)
    rng = np.random.default_rng(10)
    prob = _sigmoid_map(rng, (2, 1, 40, 96))
    plain = OnnxRuntimeRunner(path).infer([prob, db_thresh_input(0.3, 2)])
    runner = OnnxRuntimeRunner(path, resident_outputs=[0])
    assert runner.resident_outputs == ("prob",)
    resident, packed = runner.infer([prob, db_thresh_input(0.3, 2)])
    assert isinstance(resident, OrtResidentMap) and resident.shape == plain[0].shape
    assert np.array_equal(packed, plain[1])
    windows = _windows(rng, prob.shape, 10)
    want = np.array([masked_sum_of(plain[0][w.b, w.c], w) for w in windows])
    assert np.array_equal(resident.masked_sums(windows).view(np.int64), want.view(np.int64))
    assert np.array_equal(resident.to_numpy(), plain[0])
    with pytest.raises(KeyError, match="no output named"):
        OnnxRuntimeRunner(path, resident_outputs=["nope"])


def _page_map(rng: np.random.Generator) -> np.ndarray:
    """A DB-like map: text-line rectangles of high probability on a low background."""
    prob = _sigmoid_map(rng, (1, 1, 160, 320)) * np.float32(0.2)
    for y, x, h, w in ((10, 12, 14, 200), (40, 30, 12, 260), (70, 5, 20, 120), (110, 150, 9, 90)):
        prob[0, 0, y : y + h, x : x + w] = 0.6 + 0.4 * rng.random((h, w), np.float32)
    return prob


def test_a_paddlex_whose_box_score_differs_makes_us_read_windows(caplog) -> None:
    """If PaddleX's box_score_fast ever drew its mask differently than we replicate, the first
    score's check catches it: results stay the instance's own, from window reads."""
    from paddlex.inference.models.text_detection.processors import DBPostProcess

    from paddleocr_trt.postprocess.db import BitmapDBPostProcess

    class InnerRectScore(DBPostProcess):
        """A DBPostProcess variant (not a double: a real subclass PaddleOCR could ship)
        whose fast score averages the box's bounding rectangle without its border pixels."""

        def box_score_fast(self, bitmap, _box):
            h, w = bitmap.shape[:2]
            x0 = max(0, min(int(_box[:, 0].min()) + 1, w - 1))
            x1 = max(0, min(int(_box[:, 0].max()) - 1, w - 1))
            y0 = max(0, min(int(_box[:, 1].min()) + 1, h - 1))
            y1 = max(0, min(int(_box[:, 1].max()) - 1, h - 1))
            return float(np.mean(bitmap[y0 : y1 + 1, x0 : x1 + 1], dtype=np.float64))

    rng = np.random.default_rng(11)
    prob = _page_map(rng)
    packed = np.packbits(prob > 0.3, axis=-1)
    shape = np.array([160, 320, 1.0, 1.0])
    for cls, mismatch in ((DBPostProcess, False), (InnerRectScore, True)):
        stock = cls(thresh=0.3, box_thresh=0.6, unclip_ratio=1.5)
        want_boxes, want_scores = stock([prob], [shape])
        post = BitmapDBPostProcess(stock)
        with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
            caplog.clear()
            for _ in range(2):  # the second call runs after the check decided
                got_boxes, got_scores = post([_ort_map(prob.copy()), packed], [shape])
                assert got_scores == want_scores and len(want_scores[0]) == 4
                assert [b.tolist() for b in got_boxes[0]] == [b.tolist() for b in want_boxes[0]]
        assert post.read_windows is mismatch
        assert ("reading box windows instead" in caplog.text) is mismatch


def test_box_sums_count_as_engine_time_of_the_model_not_as_calls() -> None:
    from paddleocr_trt.integration.fused_runner import EngineTimedMap
    from paddleocr_trt.integration.report import take_stage_timings

    rng = np.random.default_rng(12)
    array = _sigmoid_map(rng, (1, 1, 200, 640))
    windows = _windows(rng, array.shape, 40)
    take_stage_timings()
    timed = EngineTimedMap(_ort_map(array), "PP-OCRv4_mobile_det")
    got = timed.masked_sums(windows)
    want = np.array([masked_sum_of(array[0, 0], w) for w in windows])
    assert np.array_equal(got.view(np.int64), want.view(np.int64))
    assert timed.shape == (1, 1, 200, 640) and timed.fetched_bytes == 8 * len(windows)
    (timing,) = take_stage_timings().values()
    assert timing.stage == "det" and timing.calls == 0 and timing.engine_seconds > 0
