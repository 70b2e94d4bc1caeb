"""Resident outputs: what needs no GPU (argument checks, lease bookkeeping, joining pieces).

The device copies themselves are tested on a GPU in tests/gpu/test_cuda_resident_gpu.py. Here
the pool's buffers stay unallocated (capacity 0, no CUDA call) and maps are empty, so the lease
bookkeeping (acquire, release, garbage collection, close) runs without cuda-python.
"""

from __future__ import annotations

import gc
import itertools

import numpy as np
import pytest

from paddleocr_trt.backend.cuda import run_with_backoff
from paddleocr_trt.backend.cuda.concat import BatchConcatMap, concat_outputs
from paddleocr_trt.backend.cuda.resident import (
    DeviceResidentMap,
    ResidentOutputs,
    ResidentPool,
    resident_indices,
)
from paddleocr_trt.errors import OutOfMemoryError
from paddleocr_trt.postprocess.resident import HostResidentMap, ResidentMap


def test_resident_indices_resolve_names_and_indices() -> None:
    names = ["bitmap", "prob", "extra"]
    assert resident_indices(["prob"], names, 3) == [1]
    assert resident_indices([2, "bitmap"], names, 3) == [2, 0]
    assert resident_indices([np.int64(1)], None, 3) == [1]
    assert resident_indices((), None, 3) == []


@pytest.mark.parametrize(
    ("outputs", "names", "error", "match"),
    [
        (["prob"], None, KeyError, "no output named 'prob'"),
        (["probs"], ["bitmap", "prob"], KeyError, "no output named 'probs'"),
        ([2], ["bitmap", "prob"], IndexError, "out of range"),
        ([-1], None, IndexError, "out of range"),
        ([True], None, TypeError, "index or a name"),
        ([1.0], None, TypeError, "index or a name"),
        (["prob", 1], ["bitmap", "prob"], ValueError, "named twice"),
    ],
)
def test_resident_indices_refuse(outputs, names, error, match) -> None:
    with pytest.raises(error, match=match):
        resident_indices(outputs, names, 2)


def test_executor_refuses_bad_resident_outputs_before_touching_a_gpu() -> None:
    from paddleocr_trt.backend.cuda import CudaExecutor

    common = {"input_dtypes": [np.float32], "output_dtypes": [np.uint8, np.float32]}
    with pytest.raises(KeyError, match="no output named 'prob'"):
        CudaExecutor(object(), resident_outputs=["prob"], **common)  # no output_names
    with pytest.raises(ValueError, match="3 output names for 2 outputs"):
        CudaExecutor(object(), output_names=["a", "b", "c"], resident_outputs=[1], **common)
    with pytest.raises(IndexError, match="out of range"):
        CudaExecutor(object(), resident_outputs=[5], **common)


def _empty_map(pool: ResidentPool, **kw) -> DeviceResidentMap:
    """A map of no pixels over an unallocated lease: bookkeeping without CUDA."""
    return DeviceResidentMap(pool, pool.acquire(), (1, 1, 0, 4), np.float32, **kw)


def test_pool_reuses_released_buffers_last_in_first_out() -> None:
    pool = ResidentPool(0, "prob")
    a, b = _empty_map(pool), _empty_map(pool)
    assert (pool.created, pool.leased_count, pool.free_count) == (2, 2, 0)
    buf_a = a._lease.buf
    a.release()
    a.release()  # idempotent
    assert (pool.leased_count, pool.free_count) == (1, 1)
    c = _empty_map(pool)
    assert c._lease.buf is buf_a and pool.created == 2  # reused, not a new buffer
    del b
    gc.collect()  # a map that is dropped gives its buffer back too
    assert (pool.leased_count, pool.free_count) == (1, 1)
    for _ in range(100):
        _empty_map(pool).release()
    assert pool.created == 2  # bounded by the maps alive at once
    c.release()
    assert (pool.leased_count, pool.free_count, pool.created) == (0, 2, 2)


def test_maps_raise_after_release_and_after_close() -> None:
    pool = ResidentPool(0)
    released, live = _empty_map(pool), _empty_map(pool)
    assert isinstance(live, ResidentMap) and live.nbytes == 0
    assert live.to_numpy().shape == (1, 1, 0, 4) and live.fetched_bytes == 0
    released.release()
    with pytest.raises(RuntimeError, match="after release"):
        released.to_numpy()
    pool.close()
    assert (pool.leased_count, pool.free_count) == (0, 0)
    with pytest.raises(RuntimeError, match="executor was closed"):
        live.to_numpy()
    live.release()  # after close: no error, nothing freed twice
    with pytest.raises(RuntimeError, match="after close"):
        pool.acquire()
    with pytest.raises(ValueError, match="outside the resident map"):
        live.window(0, 0, 0, 1, 0, 1)


def test_map_checks_its_shape_against_the_lease() -> None:
    pool = ResidentPool(0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        DeviceResidentMap(pool, pool.acquire(), (4, 4), np.float32)
    with pytest.raises(ValueError, match="over a buffer of 0"):
        DeviceResidentMap(pool, pool.acquire(), (1, 1, 2, 2), np.float32)


def test_resident_outputs_bind_and_unbind_slots() -> None:
    from paddleocr_trt.backend.cuda.memory import DeviceBuffer

    res = ResidentOutputs(0, ["prob"], ["bitmap", "prob"], 2)
    slots = [DeviceBuffer(0), DeviceBuffer(0)]
    placeholder = slots[1]
    leased = res.bind(slots)
    assert list(leased) == [1] and slots[1] is leased[1] and slots[1] is not placeholder
    assert res.pool("prob").leased_count == 1 and 1 in res and 0 not in res
    res.unbind(slots, leased, give_back=True)
    assert slots[1] is not leased[1] and res.pool(1).free_count == 1
    with pytest.raises(KeyError, match="output 0 \\('bitmap'\\) is not resident"):
        res.pool("bitmap")
    with pytest.raises(ValueError, match=r"must be \(N, C, H, W\)"):
        res.check_shapes([(1, 4), (1, 8)])


def _host_pieces(array: np.ndarray, sizes: list[int]) -> list[HostResidentMap]:
    bounds = np.cumsum([0, *sizes])
    return [HostResidentMap(array[a:b]) for a, b in itertools.pairwise(bounds)]


def test_batch_concat_map_reads_each_image_from_its_piece() -> None:
    rng = np.random.default_rng(3)
    full = rng.random((5, 2, 7, 9), dtype=np.float32)
    joined = concat_outputs(_host_pieces(full, [2, 1, 2]))
    assert isinstance(joined, BatchConcatMap) and isinstance(joined, ResidentMap)
    assert joined.shape == full.shape and joined.dtype == full.dtype
    for b in range(5):
        np.testing.assert_array_equal(joined.window(b, 1, 2, 7, 3, 9), full[b, 1, 2:7, 3:9])
    assert joined.fetched_bytes == 5 * 5 * 6 * 4
    boxes = [(4, 0, 0, 7, 0, 9), (0, 1, 1, 3, 2, 4), (2, 0, 6, 7, 8, 9), (1, 1, 0, 1, 0, 9)]
    for box, win in zip(boxes, joined.windows(boxes), strict=True):  # order kept across pieces
        b, c, y0, y1, x0, x1 = box
        np.testing.assert_array_equal(win, full[b, c, y0:y1, x0:x1])
    with pytest.raises(ValueError, match="outside"):
        joined.windows([(0, 0, 0, 1, 0, 1), (0, 2, 0, 1, 0, 1)])
    joined_before = joined.fetched_bytes
    assert joined_before == 5 * 5 * 6 * 4 + (63 + 4 + 1 + 9) * 4
    np.testing.assert_array_equal(joined.to_numpy(), full)
    with pytest.raises(ValueError, match="outside"):
        joined.window(5, 0, 0, 1, 0, 1)
    joined.release()
    with pytest.raises(RuntimeError, match="after release"):
        joined.window(0, 0, 0, 1, 0, 1)
    arrays = concat_outputs([full[:2], full[2:]])
    np.testing.assert_array_equal(arrays, full)
    with pytest.raises(TypeError, match="cannot join arrays with resident maps"):
        concat_outputs([full[:2], HostResidentMap(full[2:])])
    with pytest.raises(ValueError, match="cannot join"):
        BatchConcatMap([HostResidentMap(full[:1]), HostResidentMap(full[:1, :1])])


def test_backoff_joins_resident_pieces_in_order() -> None:
    """A real numpy "model" returning (N,1,H,W) maps as resident outputs; OOM above 2 items."""
    rng = np.random.default_rng(5)
    batch = rng.random((7, 1, 6, 8), dtype=np.float32)
    calls: list[int] = []

    def model(x: np.ndarray) -> list:
        calls.append(len(x))
        if len(x) > 2:
            raise OutOfMemoryError(f"batch {len(x)}")
        return [HostResidentMap(x * 2.0), x.sum(axis=(1, 2, 3))]

    prob, sums = run_with_backoff(batch, model, what="det")
    assert calls[:3] == [7, 4, 2] and sum(c for c in calls if c <= 2) == 7
    assert prob.shape == batch.shape
    for b in range(7):
        np.testing.assert_array_equal(prob.window(b, 0, 1, 5, 0, 8), batch[b, 0, 1:5] * 2.0)
    np.testing.assert_allclose(sums, batch.sum(axis=(1, 2, 3)), rtol=1e-6)
