"""Masked box sums on a real GPU: the NVRTC kernel must equal the host reference bit for bit.

The map gets its values from the identity engine (``DeviceCopyEnqueuer``: output = input, a
device-to-device copy; not TensorRT), so every sum is checked against ``masked_sum_of`` on the
same host array and, where cv2 is installed, its mean against ``cv2.mean`` itself.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from cuda_test_kernels import identity_det_executor

from paddleocr_trt.backend.cuda import CudaExecutor, cuda_available
from paddleocr_trt.backend.cuda import masked_sum as ms
from paddleocr_trt.backend.cuda.concat import BatchConcatMap
from paddleocr_trt.postprocess.resident import (
    SUM_BYTES,
    MaskedWindow,
    masked_mean,
    masked_sum_of,
)

try:
    import cv2
except ImportError:  # the GPU machine may lack it: then only the reference is compared
    cv2 = None

_OK, _REASON = cuda_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _OK, reason=f"needs CUDA: {_REASON}")]


_executor = identity_det_executor


def _resident(ex: CudaExecutor, prob: np.ndarray):
    bits = np.zeros(prob.shape, np.uint8)
    _, m = ex.run([bits, prob])
    return m


def _sigmoid_like(shape, seed: int) -> np.ndarray:
    """Probabilities spread over 1e-30..1 (as a DB map's background is), a few subnormals and
    exact zeros, so that rounding in any other order than the reference's would show."""
    rng = np.random.default_rng(seed)
    out = (10.0 ** rng.uniform(-30, 0, shape)).astype(np.float32)
    out[rng.random(shape) < 0.01] = np.float32(1e-40)  # subnormal: no flush-to-zero allowed
    out[rng.random(shape) < 0.01] = 0.0
    hi = rng.random(shape) < 0.3
    out[hi] = (1.0 / (1.0 + np.exp(-rng.normal(0, 4, shape)))).astype(np.float32)[hi]
    return out


def _quad_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A filled quad in (h, w): cv2.fillPoly as PaddleX draws it, else a numpy convex quad."""
    pts = np.stack([rng.integers(0, w, 4), rng.integers(0, h, 4)], axis=1).astype(np.int32)
    mask = np.zeros((h, w), np.uint8)
    if cv2 is not None:
        cv2.fillPoly(mask, pts.reshape(1, -1, 2), 1)
        return mask
    centre = pts.mean(axis=0)
    pts = pts[np.argsort(np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0]))]
    yy, xx = np.mgrid[0:h, 0:w]
    inside = np.ones((h, w), bool)
    for (x0, y0), (x1, y1) in zip(pts, np.roll(pts, -1, axis=0), strict=True):
        inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0
    mask[inside] = 1
    return mask


def _windows(shape, seed: int, count: int) -> list[MaskedWindow]:
    """Random quads and dense masks, every map edge, 1x1 and empty masks, all (b, c)."""
    n, c, h, w = shape
    rng = np.random.default_rng(seed)
    one = np.ones((1, 1), np.uint8)
    out = [
        MaskedWindow(n - 1, c - 1, 0, 0, (rng.random((h, w)) < 0.5).astype(np.uint8)),  # all
        MaskedWindow(0, 0, 0, 0, one),
        MaskedWindow(n - 1, c - 1, h - 1, w - 1, one),  # last pixel
        MaskedWindow(0, c - 1, 0, w - 1, np.ones((h, 1), np.uint8)),  # right edge, full height
        MaskedWindow(n - 1, 0, h - 1, 0, np.full((1, w), 255, np.uint8)),  # bottom edge
        MaskedWindow(0, 0, 0, 0, np.zeros((min(h, 5), min(w, 9)), np.uint8)),  # nothing masked
        MaskedWindow(n - 1, c - 1, 0, 0, np.zeros((1, 1), np.uint8)),
    ]
    while len(out) < count:
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        hh, ww = int(rng.integers(1, h - y0 + 1)), int(rng.integers(1, w - x0 + 1))
        if len(out) % 2:
            mask = _quad_mask(rng, hh, ww)
        else:
            mask = ((rng.random((hh, ww)) < rng.random()) * rng.integers(1, 256)).astype(np.uint8)
        out.append(MaskedWindow(int(rng.integers(0, n)), int(rng.integers(0, c)), y0, x0, mask))
    return out


def _bits(values) -> np.ndarray:
    return np.asarray(values, np.float64).view(np.int64)


def _check(prob: np.ndarray, windows: list[MaskedWindow], sums: np.ndarray) -> None:
    expected = [masked_sum_of(prob[win.b, win.c], win) for win in windows]
    assert sums.dtype == np.float64 and sums.shape == (len(windows),)
    bad = np.flatnonzero(_bits(sums) != _bits(expected))
    assert bad.size == 0, [(int(k), sums[k], expected[k]) for k in bad[:5]]
    if cv2 is None:
        return
    for win, total in zip(windows, sums, strict=True):
        h, w = win.mask.shape
        plane = prob[win.b, win.c, win.y0 : win.y0 + h, win.x0 : win.x0 + w]
        mean = cv2.mean(np.ascontiguousarray(plane), win.mask)[0]
        assert _bits([masked_mean(total, win.count)]) == _bits([mean]), (win.b, win.c, h, w)


@pytest.mark.parametrize(("shape", "seed"), [((2, 3, 97, 131), 1), ((1, 1, 1408, 992), 2)])
def test_masked_sums_equal_the_reference_bit_for_bit(shape, seed: int) -> None:
    assert ms.kernel_for(0) is not None, "no NVRTC kernel here: the host path would be tested"
    fetched: list[int] = []
    with _executor(on_fetch=fetched.append) as ex:
        prob = _sigmoid_like(shape, seed)
        m = _resident(ex, prob)
        windows = _windows(shape, seed, 150)  # 100+ windows in one call
        sums = m.masked_sums(windows)
        _check(prob, windows, sums)
        assert m.fetched_bytes == SUM_BYTES * len(windows) == sum(fetched)
        assert m.masked_sums([]).shape == (0,) and m.fetched_bytes == SUM_BYTES * len(windows)
        np.testing.assert_array_equal(_bits(m.masked_sums(windows[::-1])), _bits(sums[::-1]))
        m.release()
    assert ms.kernel_for(0) is ms.kernel_for(0)  # compiled and loaded once


def test_nan_and_inf_outside_the_mask_do_not_leak() -> None:
    shape = (2, 2, 40, 50)
    clean = _sigmoid_like(shape, 3)
    windows = _windows(shape, 3, 60)
    dirty = clean.copy()
    masked_anywhere = np.zeros(shape, bool)
    for win in windows:
        h, w = win.mask.shape
        masked_anywhere[win.b, win.c, win.y0 : win.y0 + h, win.x0 : win.x0 + w] |= win.mask != 0
    rng = np.random.default_rng(4)
    poison = np.array([np.nan, np.inf, -np.inf], np.float32)[rng.integers(0, 3, shape)]
    dirty[~masked_anywhere] = poison[~masked_anywhere]
    assert np.isnan(dirty).any() and np.isinf(dirty).any()
    with _executor() as ex, _resident(ex, dirty) as m:
        sums = m.masked_sums(windows)
        assert np.isfinite(sums).all()
        _check(clean, windows, sums)
        inside = [MaskedWindow(0, 0, 0, 0, np.ones((2, 2), np.uint8))]
        poisoned = clean.copy()
        poisoned[0, 0, 1, 1] = np.inf
        with _resident(ex, poisoned) as m2:
            assert m2.masked_sums(inside)[0] == np.inf  # inside the mask it counts
        poisoned[0, 0, 0, 1] = np.nan
        with _resident(ex, poisoned) as m3:
            assert np.isnan(m3.masked_sums(inside)[0])


def test_a_full_page_map_with_100_text_boxes() -> None:
    shape = (1, 1, 3008, 4000)
    prob = _sigmoid_like(shape, 5)
    rng = np.random.default_rng(5)
    windows = []
    for _ in range(100):  # text lines: ~30x700 px boxes, quads inside them
        hh, ww = int(rng.integers(20, 40)), int(rng.integers(400, 1000))
        y0, x0 = int(rng.integers(0, 3008 - hh)), int(rng.integers(0, 4000 - ww))
        windows.append(MaskedWindow(0, 0, y0, x0, _quad_mask(rng, hh, ww)))
    windows.append(MaskedWindow(0, 0, 0, 0, (rng.random((3008, 4000)) < 0.9).astype(np.uint8)))
    windows.append(MaskedWindow(0, 0, 3000, 3990, np.ones((8, 10), np.uint8)))  # far corner
    with _executor() as ex, _resident(ex, prob) as m:
        sums = m.masked_sums(windows)
        _check(prob, windows, sums)
        assert m.fetched_bytes == SUM_BYTES * len(windows)


def test_refused_windows_and_dead_maps() -> None:
    shape = (2, 2, 16, 24)
    prob = _sigmoid_like(shape, 6)
    ok = MaskedWindow(1, 1, 0, 0, np.ones((3, 3), np.uint8))
    ex = _executor()
    m = _resident(ex, prob)
    bad_windows = [
        (MaskedWindow(2, 0, 0, 0, np.ones((1, 1), np.uint8)), "outside the resident map"),
        (MaskedWindow(0, 2, 0, 0, np.ones((1, 1), np.uint8)), "outside the resident map"),
        (MaskedWindow(0, 0, 14, 0, np.ones((3, 1), np.uint8)), "outside the resident map"),
        (MaskedWindow(0, 0, 0, 22, np.ones((1, 3), np.uint8)), "outside the resident map"),
        (MaskedWindow(0, 0, -1, 0, np.ones((1, 1), np.uint8)), "outside the resident map"),
        (MaskedWindow(0, 0, 0, 0, np.ones((2, 2), np.float32)), "2-D uint8"),
        (MaskedWindow(0, 0, 0, 0, np.ones((2, 2), bool)), "2-D uint8"),
        (MaskedWindow(0, 0, 0, 0, np.ones((1, 2, 2), np.uint8)), "2-D uint8"),
    ]
    for bad, match in bad_windows:
        with pytest.raises(ValueError, match=match):
            m.masked_sums([ok, bad])
    assert m.fetched_bytes == 0  # refused before anything ran
    _check(prob, [ok], m.masked_sums([ok]))
    m.release()
    with pytest.raises(RuntimeError, match="after release"):
        m.masked_sums([ok])
    kept = _resident(ex, prob)
    ex.close()
    with pytest.raises(RuntimeError, match="executor was closed"):
        kept.masked_sums([ok])
    with pytest.raises(RuntimeError, match="executor was closed"):
        kept.masked_sums([])
    kept.release()


def test_host_path_is_exact_and_counts_the_windows_it_copies(monkeypatch) -> None:
    """No kernel for the device (as after a failed NVRTC compile: the cache holds None), and
    a map the kernel does not read (uint8): both go through copied windows, same numbers."""
    shape = (2, 1, 50, 70)
    prob = _sigmoid_like(shape, 7)
    windows = _windows(shape, 7, 30)
    window_bytes = sum(win.mask.size for win in windows) * 4
    with _executor() as ex:
        monkeypatch.setitem(ms._kernels, 0, None)
        with _resident(ex, prob) as m:
            _check(prob, windows, m.masked_sums(windows))
            assert m.fetched_bytes == window_bytes
        monkeypatch.undo()
        with _resident(ex, prob) as m:
            _check(prob, windows, ms.host_masked_sums(m, windows))
            assert m.fetched_bytes == window_bytes
    levels = np.random.default_rng(8).integers(0, 256, shape, dtype=np.uint8)
    with _executor(np.uint8) as ex, _resident(ex, levels) as m:
        sums = m.masked_sums(windows)
        expected = [masked_sum_of(levels[w.b, w.c], w) for w in windows]
        np.testing.assert_array_equal(_bits(sums), _bits(expected))
        assert m.fetched_bytes == window_bytes // 4


def test_joined_device_maps_and_reads_from_threads() -> None:
    """A split batch's two maps read as one; several threads summing and copying windows
    of maps while the executor keeps running (the pool lock serialises the staging)."""
    shape = (1, 2, 64, 80)
    errors: list[BaseException] = []
    with _executor(use_cuda_graphs=True) as ex:
        probs = [_sigmoid_like(shape, 20 + i) for i in range(2)]
        joined = BatchConcatMap([_resident(ex, p) for p in probs])
        full = np.concatenate(probs)
        windows = _windows(full.shape, 9, 40)
        _check(full, windows, joined.masked_sums(windows))
        assert joined.fetched_bytes == SUM_BYTES * len(windows)
        joined.release()

        def read(m, prob, seed: int) -> None:
            try:
                wins = _windows(shape, seed, 20)
                for _ in range(3):
                    _check(prob, wins, m.masked_sums(wins))
                    box = (0, 1, 3, 40, 5, 70)
                    np.testing.assert_array_equal(m.windows([box])[0], prob[0, 1, 3:40, 5:70])
                m.release()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = []
        for i in range(12):
            prob = _sigmoid_like(shape, 100 + i)
            t = threading.Thread(target=read, args=(_resident(ex, prob), prob, i))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
    assert not errors, errors[0]
