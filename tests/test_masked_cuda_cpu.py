"""Masked box sums, the parts that need no GPU: joining pieces, mask packing, the host fallback
choice, and the -0.0 case of the reference. The kernel itself runs in
tests/gpu/test_masked_sums_gpu.py."""

from __future__ import annotations

import importlib.util
import itertools
import logging

import cv2
import numpy as np
import pytest

from paddleocr_trt.backend.cuda import masked_sum
from paddleocr_trt.backend.cuda.concat import BatchConcatMap
from paddleocr_trt.backend.cuda.resident import DeviceResidentMap, ResidentPool
from paddleocr_trt.log import reset_warn_once
from paddleocr_trt.postprocess.resident import (
    HostResidentMap,
    MaskedWindow,
    ResidentMap,
    masked_mean,
    masked_sum_of,
    pack_masked_windows,
)

_HAS_CUDA_PYTHON = importlib.util.find_spec("cuda") is not None


def _quad_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A filled random quad inside (h, w), drawn as PaddleX draws box masks."""
    mask = np.zeros((h, w), np.uint8)
    pts = np.stack([rng.integers(0, w, 4), rng.integers(0, h, 4)], axis=1).astype(np.int32)
    cv2.fillPoly(mask, pts.reshape(1, -1, 2), 1)
    return mask


def _random_windows(rng: np.random.Generator, shape, count: int) -> list[MaskedWindow]:
    n, c, h, w = shape
    out = []
    for k in range(count):
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        hh, ww = int(rng.integers(1, h - y0 + 1)), int(rng.integers(1, w - x0 + 1))
        if k % 3 == 0:
            mask = _quad_mask(rng, hh, ww)
        else:
            mask = ((rng.random((hh, ww)) < 0.6) * rng.integers(1, 256)).astype(np.uint8)
        out.append(MaskedWindow(int(rng.integers(0, n)), int(rng.integers(0, c)), y0, x0, mask))
    return out


def _bits(values) -> np.ndarray:
    return np.asarray(values, np.float64).view(np.int64)


def test_batch_concat_map_masked_sums_equal_the_reference_on_the_joined_map() -> None:
    rng = np.random.default_rng(11)
    full = (1.0 / (1.0 + np.exp(-rng.normal(0, 8, (6, 2, 23, 31))))).astype(np.float32)
    bounds = np.cumsum([0, 2, 1, 3])
    parts = [HostResidentMap(full[a:b]) for a, b in itertools.pairwise(bounds)]
    joined = BatchConcatMap(parts)
    assert isinstance(joined, ResidentMap)
    windows = _random_windows(rng, full.shape, 40)
    windows.append(MaskedWindow(5, 1, 22, 30, np.ones((1, 1), np.uint8)))  # last corner
    windows.append(MaskedWindow(3, 0, 0, 0, np.zeros((23, 31), np.uint8)))  # nothing masked
    sums = joined.masked_sums(windows)
    expected = [masked_sum_of(full[w.b, w.c], w) for w in windows]
    assert sums.dtype == np.float64 and sums.shape == (len(windows),)
    np.testing.assert_array_equal(_bits(sums), _bits(expected))
    assert sums[-1] == 0.0 and len({w.b for w in windows}) > 3  # every piece was asked
    # the pieces count what they read; the joined map reports their total
    assert joined.fetched_bytes == sum(p.fetched_bytes for p in parts)
    assert joined.fetched_bytes == sum(w.count for w in windows) * 4
    assert joined.masked_sums([]).shape == (0,)


@pytest.mark.parametrize(
    ("window", "error", "match"),
    [
        (MaskedWindow(6, 0, 0, 0, np.ones((1, 1), np.uint8)), ValueError, "outside"),
        (MaskedWindow(0, 2, 0, 0, np.ones((1, 1), np.uint8)), ValueError, "outside"),
        (MaskedWindow(5, 0, 20, 0, np.ones((4, 1), np.uint8)), ValueError, "outside"),
        (MaskedWindow(0, 0, 0, 0, np.ones((2, 2), np.float32)), ValueError, "2-D uint8"),
        (MaskedWindow(0, 0, 0, 0, np.ones(4, np.uint8)), ValueError, "2-D uint8"),
    ],
)
def test_batch_concat_map_refuses_a_bad_window_before_reading(window, error, match) -> None:
    full = np.zeros((6, 2, 23, 31), np.float32)
    parts = [HostResidentMap(full[:3]), HostResidentMap(full[3:])]
    good = MaskedWindow(4, 1, 0, 0, np.ones((3, 3), np.uint8))
    with pytest.raises(error, match=match):
        BatchConcatMap(parts).masked_sums([good, window])
    assert all(p.fetched_bytes == 0 for p in parts)


@pytest.mark.parametrize("seed", range(4))
def test_pack_masked_windows_round_trip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    windows = [
        MaskedWindow(
            int(rng.integers(0, 9)), int(rng.integers(0, 3)), int(rng.integers(0, 99)),
            int(rng.integers(0, 99)),
            rng.integers(0, 3, (int(rng.integers(1, 40)), int(rng.integers(1, 40))), np.uint8)
            * rng.integers(1, 128, dtype=np.uint8),
        )
        for _ in range(25)
    ]  # fmt: skip
    windows.append(MaskedWindow(0, 0, 0, 0, np.ones((1, 1), np.uint8)))  # 1 pixel, 1 byte
    windows.append(MaskedWindow(0, 0, 0, 0, np.ones((3, 5), np.uint8)))  # odd width
    meta, bits = pack_masked_windows(windows)
    assert meta.dtype == np.int64 and meta.shape == (len(windows), 7)
    assert bits.dtype == np.uint8
    offset = 0
    for row, win in zip(meta, windows, strict=True):
        h, w = win.mask.shape
        assert tuple(row[:6]) == (win.b, win.c, win.y0, win.x0, h, w)
        assert row[6] == offset  # each mask starts on its own byte, right after the last
        nbytes = -(-h * w // 8)
        chunk = bits[offset : offset + nbytes]
        unpacked = np.unpackbits(chunk)  # MSB first, as the kernel reads bit 7 - (p & 7)
        np.testing.assert_array_equal(unpacked[: h * w].reshape(h, w), win.mask != 0)
        assert not unpacked[h * w :].any()  # padding bits are clear
        offset += nbytes
    assert bits.size == offset
    empty_meta, empty_bits = pack_masked_windows([])
    assert empty_meta.shape == (0, 7) and empty_bits.size == 0


@pytest.mark.parametrize("use_ipp", [True, False])
def test_reference_sum_of_negative_zeros_is_cv2s_positive_zero(use_ipp: bool) -> None:
    """cv2.mean adds onto +0.0, so masked -0.0 values sum to +0.0 (and a mean of +0.0)."""
    was = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(use_ipp)
    try:
        for values in ([-0.0], [-0.0, -0.0, -0.0], [-0.0, 2.5, -0.0], [1e-30, -0.0]):
            plane = np.array([values], np.float32)
            win = MaskedWindow(0, 0, 0, 0, np.ones_like(plane, np.uint8))
            total = masked_sum_of(plane, win)
            mean = cv2.mean(plane, win.mask)[0]
            assert _bits([masked_mean(total, win.count)]) == _bits([mean]), values
            assert np.signbit(total) == np.signbit(mean)
    finally:
        cv2.ipp.setUseIPP(was)


@pytest.mark.skipif(_HAS_CUDA_PYTHON, reason="cuda-python is installed: the kernel path is taken")
def test_no_nvrtc_means_the_host_path_said_once(caplog: pytest.LogCaptureFixture) -> None:
    """Without cuda-python's NVRTC (this machine) no kernel is had; the reason is logged once
    and remembered, so later calls neither retry nor log again."""
    reset_warn_once()
    masked_sum._kernels.pop(7, None)
    try:
        with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
            assert masked_sum.kernel_for(7) is None
            assert masked_sum.kernel_for(7) is None
        said = [r.getMessage() for r in caplog.records if "summed on the host" in r.getMessage()]
        assert len(said) == 1, said
        assert "device 7" in said[0] and "NVRTC" in said[0] and "same results" in said[0]
        with pytest.raises(masked_sum.KernelUnavailable, match="NVRTC"):
            masked_sum.compile_cubin("sm_90")
    finally:
        masked_sum._kernels.pop(7, None)


def test_device_map_masked_sums_check_everything_before_any_cuda_call() -> None:
    """An empty map over an unallocated lease: no CUDA is needed to refuse or to answer []."""
    pool = ResidentPool(0, "prob")
    fetched: list[int] = []
    m = DeviceResidentMap(pool, pool.acquire(), (1, 1, 0, 4), np.float32, on_fetch=fetched.append)
    empty = m.masked_sums([])
    assert empty.dtype == np.float64 and empty.shape == (0,)
    with pytest.raises(ValueError, match="outside the resident map"):
        m.masked_sums([MaskedWindow(0, 0, 0, 0, np.ones((1, 1), np.uint8))])
    with pytest.raises(ValueError, match="2-D uint8"):
        m.masked_sums([MaskedWindow(0, 0, 0, 0, np.ones((1, 1), bool))])
    assert m.fetched_bytes == 0 and fetched == []
    pool.extras["masked_sums"] = staging = masked_sum.MaskedSumStaging(0)
    pool.close()
    assert pool.extras == {} and staging.dev_in.capacity == 0
    with pytest.raises(RuntimeError, match="executor was closed"):
        m.masked_sums([])
    m.release()
    with pytest.raises(RuntimeError, match="after release"):
        m.masked_sums([])
