"""Resident outputs on a real GPU: maps over leased device buffers, read window by window.

The engine is the identity enqueuer (``DeviceCopyEnqueuer``: output i = input i, copied
device-to-device on the executor's stream), so every window must equal the numpy slice of the
input; none of this is TensorRT. Inputs "bitmap" (uint8, copied back) and "prob" (resident)
mirror the fused det graph's two outputs.
"""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
from cuda_test_kernels import identity_det_executor

from paddleocr_trt.backend.cuda import cuda_available
from paddleocr_trt.backend.cuda.resident import DeviceResidentMap
from paddleocr_trt.postprocess.resident import ResidentMap

_OK, _REASON = cuda_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _OK, reason=f"needs CUDA: {_REASON}")]


_executor = identity_det_executor


def _data(shape, dtype, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.standard_normal(shape).astype(dtype)


def _windows(shape):
    n, c, h, w = shape
    rng = np.random.default_rng(h * w)
    yield from [
        (n - 1, c - 1, 0, h, 0, w),  # the whole plane
        (0, 0, 0, 1, 0, 1),  # corners
        (n - 1, c - 1, h - 1, h, w - 1, w),
        (0, c - 1, 0, h, w - 1, w),  # last column, first row
        (n - 1, 0, h - 1, h, 0, w),
    ]
    for _ in range(6):
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        y1, x1 = int(rng.integers(y0 + 1, h + 1)), int(rng.integers(x0 + 1, w + 1))
        yield (int(rng.integers(0, n)), int(rng.integers(0, c)), y0, y1, x0, x1)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((1, 1, 1408, 992), np.float32),
        ((2, 3, 17, 33), np.uint8),
        ((3, 1, 5, 7), np.float32),
        ((1, 2, 64, 1), np.uint8),
        ((2, 1, 1, 130), np.float32),
    ],
)
def test_windows_equal_numpy_slices(shape, dtype) -> None:
    fetched: list[int] = []
    with _executor(dtype, on_fetch=fetched.append) as ex:
        bits, prob = _data(shape, np.uint8, 1), _data(shape, dtype, 2)
        out_bits, resident = ex.run([bits, prob])
        np.testing.assert_array_equal(out_bits, bits)  # a non-resident output: copied as ever
        assert isinstance(resident, DeviceResidentMap) and isinstance(resident, ResidentMap)
        assert resident.shape == shape and resident.dtype == np.dtype(dtype)
        assert resident.nbytes == 0 and resident.fetched_bytes == 0
        assert ex.stats.resident_outputs == 1
        expected_bytes = 0
        for b, c, y0, y1, x0, x1 in _windows(shape):
            win = resident.window(b, c, y0, y1, x0, x1)
            np.testing.assert_array_equal(win, prob[b, c, y0:y1, x0:x1])
            assert win.flags.c_contiguous and win.flags.writeable
            expected_bytes += win.nbytes
        np.testing.assert_array_equal(resident.to_numpy(), prob)
        expected_bytes += prob.nbytes
        boxes = list(_windows(shape))
        for box, win in zip(boxes, resident.windows(boxes), strict=True):  # one batch
            b, c, y0, y1, x0, x1 = box
            np.testing.assert_array_equal(win, prob[b, c, y0:y1, x0:x1])
            assert win.flags.owndata  # a copy, not a view of the pool's staging
            expected_bytes += win.nbytes
        assert resident.windows([]) == []
        assert resident.fetched_bytes == expected_bytes == sum(fetched)
        n, c, h, w = shape
        for bad in [(n, 0, 0, 1, 0, 1), (0, c, 0, 1, 0, 1), (0, 0, 0, h + 1, 0, 1),
                    (0, 0, 0, 1, 0, w + 1), (0, 0, 1, 1, 0, 1), (0, 0, -1, 1, 0, 1)]:  # fmt: skip
            with pytest.raises(ValueError, match="outside the resident map"):
                resident.window(*bad)
            with pytest.raises(ValueError, match="outside the resident map"):
                resident.windows([(0, 0, 0, 1, 0, 1), bad])
        assert resident.fetched_bytes == expected_bytes  # refused reads copied nothing
        resident.release()
        with pytest.raises(RuntimeError, match="after release"):
            resident.window(0, 0, 0, 1, 0, 1)
        with pytest.raises(RuntimeError, match="after release"):
            resident.windows([(0, 0, 0, 1, 0, 1)])


def test_a_map_stays_valid_while_the_executor_runs_again() -> None:
    shape = (1, 1, 96, 128)
    with _executor() as ex:
        bits = _data(shape, np.uint8, 0)
        first_data = _data(shape, np.float32, 10)
        _, first = ex.run([bits, first_data])
        later = []
        for seed in range(11, 15):  # other data through the executor meanwhile
            data = _data(shape, np.float32, seed)
            _, m = ex.run([bits, data], copy_outputs=seed % 2 == 0)
            np.testing.assert_array_equal(m.to_numpy(), data)
            later.append(m)
        np.testing.assert_array_equal(first.to_numpy(), first_data)  # unchanged
        assert len({m.device_ptr for m in (first, *later)}) == 5  # one leased buffer each
        assert ex.resident_pool("prob").created == 5
        for m in (first, *later):
            m.release()
        assert ex.resident_pool(1).free_count == 5


def test_buffers_are_reused_after_release_and_after_garbage_collection() -> None:
    with _executor() as ex:
        pool = ex.resident_pool("prob")
        for i in range(100):
            shape = (1, 1, 32 + (i % 3) * 16, 64)  # shrinking and growing
            data = _data(shape, np.float32, i)
            _, m = ex.run([_data(shape, np.uint8, i), data])
            np.testing.assert_array_equal(m.window(0, 0, 1, shape[2], 3, 60), data[0, 0, 1:, 3:60])
            m.release()
        assert pool.created == 1 and pool.free_count == 1 and pool.leased_count == 0
        for _ in range(20):  # dropped maps go back too (weakref.finalize)
            ex.run([np.zeros((1, 1, 8, 8), np.uint8), np.zeros((1, 1, 8, 8), np.float32)])
            gc.collect()
        assert pool.created == 1 and pool.leased_count == 0


def test_cuda_graphs_replay_into_the_leased_buffer_of_each_call() -> None:
    """Pipelined: map i is read after call i+1 ran. Two buffers alternate, each with its graph;
    the negative control (every call's data differs) shows the replays really copy."""
    shape = (1, 1, 64, 96)
    bits = _data(shape, np.uint8, 0)
    with _executor(use_cuda_graphs=True) as ex:
        held_data = _data(shape, np.float32, 100)
        _, held = ex.run([bits, held_data])  # kept for the whole test: its buffer is never bound
        previous = None
        inputs = []
        for i in range(12):
            data = _data(shape, np.float32, i)
            inputs.append(data)
            _, m = ex.run([bits, data])
            np.testing.assert_array_equal(m.to_numpy(), data)
            if previous is not None:
                prev_map, prev_data = previous
                np.testing.assert_array_equal(prev_map.window(0, 0, 5, 60, 7, 90),
                                              prev_data[0, 0, 5:60, 7:90])  # fmt: skip
                assert not np.array_equal(prev_map.to_numpy(), m.to_numpy())
                prev_map.release()
            previous = (m, data)
        stats = ex.stats
        assert stats.graph_launches >= 6, stats  # replays happened...
        assert stats.graph_captures >= 2, stats  # ...with one graph per alternating buffer
        np.testing.assert_array_equal(held.to_numpy(), held_data)
        assert ex.resident_pool("prob").created == 3
        # a larger shape grows a buffer: graphs are invalidated, results stay exact
        big = (1, 1, 128, 192)
        for i in range(4):
            data = _data(big, np.float32, 50 + i)
            _, m = ex.run([_data(big, np.uint8, i), data])
            np.testing.assert_array_equal(m.to_numpy(), data)
            m.release()
        assert ex.stats.graph_invalidations >= 1
        np.testing.assert_array_equal(held.to_numpy(), held_data)


def test_close_with_live_maps() -> None:
    ex = _executor()
    shape = (1, 1, 16, 16)
    _, kept = ex.run([_data(shape, np.uint8, 0), _data(shape, np.float32, 0)])
    _, released = ex.run([_data(shape, np.uint8, 1), _data(shape, np.float32, 1)])
    released.release()
    ex.close()
    ex.close()
    with pytest.raises(RuntimeError, match="executor was closed"):
        kept.window(0, 0, 0, 1, 0, 1)
    with pytest.raises(RuntimeError, match="executor was closed"):
        kept.windows([(0, 0, 0, 1, 0, 1)])
    with pytest.raises(RuntimeError, match="after release"):
        released.window(0, 0, 0, 1, 0, 1)
    kept.release()  # no double free
    del kept, released
    gc.collect()


def test_windows_read_from_another_thread_while_the_executor_runs() -> None:
    """The pipelined OCR path: post-processing reads map i while det runs image i+1."""
    shape = (1, 1, 256, 320)
    bits = _data(shape, np.uint8, 0)
    errors: list[BaseException] = []
    with _executor(use_cuda_graphs=True) as ex:

        def read(m, data) -> None:
            try:
                for y in range(0, 256, 32):
                    win = m.window(0, 0, y, y + 30, 10, 300)
                    np.testing.assert_array_equal(win, data[0, 0, y : y + 30, 10:300])
                boxes = [(0, 0, y, y + 20, 5 + y // 4, 200 + y // 4) for y in range(0, 230, 23)]
                for (_, _, y0, y1, x0, x1), win in zip(boxes, m.windows(boxes), strict=True):
                    np.testing.assert_array_equal(win, data[0, 0, y0:y1, x0:x1])
                m.release()
            except BaseException as exc:  # reported below
                errors.append(exc)

        readers = []
        for i in range(30):
            data = _data(shape, np.float32, i)
            _, m = ex.run([bits, data])
            t = threading.Thread(target=read, args=(m, data))
            t.start()
            readers.append(t)
        for t in readers:
            t.join()
    assert not errors, errors[0]
