"""Zero-copy I/O (pinned input views, output views), first-class uint8 inputs and small
argmax outputs, and CUDA graphs that re-set shapes before replay and stay within their bound.

All on a real GPU with real NVRTC kernels (tests/gpu/cuda_test_kernels.py); none is TensorRT.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

from paddleocr_trt.backend.cuda import CudaExecutor, cuda_available
from paddleocr_trt.backend.cuda.enqueuers import DeviceCopyEnqueuer
from paddleocr_trt.backend.cuda.runtime import check, cudart

_OK, _REASON = cuda_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _OK, reason=f"needs CUDA: {_REASON}")]


def _kernels():
    try:
        import cuda_test_kernels
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"cannot import the NVRTC test kernels: {exc}")
    return cuda_test_kernels


def _memory_type(ptr: int) -> str:
    return check(cudart().cudaPointerGetAttributes(ptr), "cudaPointerGetAttributes").type.name


# -- zero-copy I/O -----------------------------------------------------------------------------


def test_input_views_are_used_in_place_and_outputs_are_pinned_views() -> None:
    rng = np.random.default_rng(11)
    with CudaExecutor(DeviceCopyEnqueuer([np.float32, np.int32]),
                      input_dtypes=[np.float32, np.int32], output_dtypes=[np.float32, np.int32],
                      input_names=["x", "ids"]) as ex:  # fmt: skip
        previous = None
        for shape in [(2, 3, 40, 56), (2, 3, 40, 56), (1, 3, 8, 8)]:
            x = ex.input_view("x", shape)
            ids = ex.input_view(1, shape[:2], np.int32)
            assert _memory_type(x.ctypes.data) == "cudaMemoryTypeHost"
            ref_x = rng.standard_normal(shape).astype(np.float32)
            ref_ids = rng.integers(0, 6625, size=shape[:2], dtype=np.int32)
            x[...] = ref_x  # the producer writes in place
            ids[...] = ref_ids
            before = ex.stats
            out_x, out_ids = ex.run([x, ids], copy_outputs=False)
            after = ex.stats
            assert after.zero_copy_inputs - before.zero_copy_inputs == 2
            assert after.staged_inputs == before.staged_inputs
            np.testing.assert_array_equal(out_x, ref_x)
            np.testing.assert_array_equal(out_ids, ref_ids)
            assert _memory_type(out_x.ctypes.data) == "cudaMemoryTypeHost"
            assert not out_x.flags.writeable
            if previous is not None and previous[0].shape == shape:
                # documented lifetime: an output view shows the latest call's data
                np.testing.assert_array_equal(previous[0], ref_x)
            previous = (out_x, ref_x)
        # arbitrary arrays still work (staged), and copies are the default
        y = np.arange(12, dtype=np.float64).reshape(3, 4)
        out = ex.run([y, np.zeros((3,), np.int64)])
        assert ex.stats.staged_inputs == 2
        np.testing.assert_array_equal(out[0], y.astype(np.float32))
        assert out[0].flags.writeable and out[0].flags.owndata
        with pytest.raises(TypeError, match="float32, not uint8"):
            ex.input_view("x", (1, 2), np.uint8)
        with pytest.raises(KeyError, match="no input named"):
            ex.input_view("image", (1, 2))
        with pytest.raises(IndexError):
            ex.input_view(2, (1, 2))


def test_a_view_outlives_its_buffer_growth_and_is_then_staged() -> None:
    with CudaExecutor(DeviceCopyEnqueuer([np.float32]), input_dtypes=[np.float32],
                      output_dtypes=[np.float32]) as ex:  # fmt: skip
        small = ex.input_view(0, (4, 4))
        small[...] = 3.0
        big = ex.input_view(0, (1024, 1024))  # reallocates the pinned buffer
        assert ex.stats.buffer_reallocations == 2
        gc.collect()
        # the old view still owns live memory (no use-after-free): read, write, run it
        small += 1.0
        (out,) = ex.run([small])
        np.testing.assert_array_equal(out, np.full((4, 4), 4.0, np.float32))
        assert (ex.stats.staged_inputs, ex.stats.zero_copy_inputs) == (1, 0)
        big[...] = 7.0
        (out,) = ex.run([big], copy_outputs=False)
        assert ex.stats.zero_copy_inputs == 1
        assert float(out.min()) == float(out.max()) == 7.0
    # after close the views still read (memory freed only when they go away)
    assert float(out[0, 0]) == 7.0 and float(small[0, 0]) == 4.0


def test_uint8_nhwc_input_with_engine_side_normalisation() -> None:
    kernels = _kernels()
    rng = np.random.default_rng(4)
    with CudaExecutor(kernels.NhwcNormalizeEnqueuer(0), input_dtypes=[np.uint8],
                      output_dtypes=[np.float32]) as ex:  # fmt: skip
        for shape in [(1, 64, 96, 3), (2, 40, 32, 3)]:
            img = rng.integers(0, 256, size=shape, dtype=np.uint8)
            ref = ((img.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2)
            view = ex.input_view(0, shape, np.uint8)
            view[...] = img
            (zero_copy,) = ex.run([view])
            (staged,) = ex.run([img])
            np.testing.assert_allclose(zero_copy, ref, rtol=0, atol=1e-6)
            np.testing.assert_array_equal(staged, zero_copy)
        assert ex.stats.zero_copy_inputs == 2 and ex.stats.staged_inputs == 2


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_argmax_outputs_are_small_and_exact(index_dtype) -> None:
    kernels = _kernels()
    rng = np.random.default_rng(7)
    with CudaExecutor(kernels.ArgmaxEnqueuer(0, index_dtype), input_dtypes=[np.float32],
                      output_dtypes=[index_dtype, np.float32]) as ex:  # fmt: skip
        for width in (320, 960):
            logits = rng.standard_normal((6, width // 8, 6625)).astype(np.float32)
            view = ex.input_view(0, logits.shape)
            view[...] = logits
            idx, best = ex.run([view], copy_outputs=False)
            assert idx.dtype == index_dtype and idx.shape == (6, width // 8)
            np.testing.assert_array_equal(idx, logits.argmax(axis=-1))
            np.testing.assert_array_equal(best, logits.max(axis=-1))


# -- CUDA graphs -------------------------------------------------------------------------------


def test_graph_replay_after_a_shape_change_resets_the_enqueuer_shapes() -> None:
    """The enqueuer reads its element count from host state at run time (like TensorRT): a
    replay without re-setting the shapes would process the last-set shapes' count."""
    kernels = _kernels()
    enq = kernels.HostShapeStateEnqueuer(0)
    big, small, mid = (2, 3, 64, 96), (1, 3, 16, 24), (1, 3, 32, 40)
    sequence = [big, big, small, small, big, small, big, mid, mid, small, mid]
    rng = np.random.default_rng(21)
    with CudaExecutor(enq, input_dtypes=[np.float32], output_dtypes=[np.float32],
                      use_cuda_graphs=True) as ex:  # fmt: skip
        for i, shape in enumerate(sequence):
            x = ex.input_view(0, shape)
            x[...] = rng.standard_normal(shape).astype(np.float32)  # fresh data every call
            expected = 2.0 * x + 1.0
            (y,) = ex.run([x], copy_outputs=bool(i % 2))
            np.testing.assert_array_equal(y, expected, err_msg=f"call {i}, shape {shape}")
            assert enq.shape_sets[-1] == (shape,)  # the enqueuer's state is this call's shapes
        s = ex.stats
        # Negative control: change the enqueuer's host state behind the executor's back, so it
        # skips the re-set; the replay then computes only the small shape's element count.
        enq.set_input_shapes([small])
        x = rng.standard_normal(mid).astype(np.float32)
        (y,) = ex.run([x])
        assert ex.stats.graph_launches == s.graph_launches + 1
        n_small = int(np.prod(small))
        np.testing.assert_array_equal(y.ravel()[:n_small], (2.0 * x + 1.0).ravel()[:n_small])
        assert not np.array_equal(y, 2.0 * x + 1.0)
    # replays: big (5th), small (6th), big (7th), small (10th), mid (11th)
    assert s.graph_launches == 5 and s.graph_captures == 3
    assert s.shape_resets == 5  # every replay above followed a call of other shapes
    # first call only: input_view grew the pinned input, run() the device and output buffers
    assert s.buffer_reallocations == 2 and s.graph_invalidations == 0


def test_graph_cache_is_lru_bounded() -> None:
    kernels = _kernels()
    enq = kernels.AffineKernelEnqueuer(0)
    a, b, c = (4, 3, 64, 64), (2, 3, 64, 64), (1, 3, 64, 64)  # largest first: no reallocation
    rng = np.random.default_rng(2)
    with CudaExecutor(enq, input_dtypes=[np.float32], output_dtypes=[np.float32],
                      use_cuda_graphs=True, graph_cache_size=2) as ex:  # fmt: skip

        def call(shape) -> None:
            x = rng.standard_normal(shape).astype(np.float32)
            np.testing.assert_array_equal(ex.run([x])[0], 2.0 * x + 1.0)

        for shape in (a, a, b, b):
            call(shape)
        assert ex.cached_graphs == 2 and ex.stats.graph_evictions == 0
        call(c)
        call(c)  # third graph: a (least recently used) is evicted
        assert ex.cached_graphs == 2 and ex.stats.graph_evictions == 1
        launches = ex.stats.graph_launches
        call(b)  # still cached: replayed
        assert ex.stats.graph_launches == launches + 1
        captures = ex.stats.graph_captures
        call(a)  # evicted: runs eagerly and is captured again (evicting c, now the LRU)
        assert ex.stats.graph_launches == launches + 1
        assert ex.stats.graph_captures == captures + 1
        assert ex.cached_graphs == 2 and ex.stats.graph_evictions == 2
        call(b)
        call(a)
        assert ex.stats.graph_launches == launches + 3
    with pytest.raises(ValueError, match="max_size must be >= 1"):
        CudaExecutor(enq, input_dtypes=[np.float32], output_dtypes=[np.float32],
                     graph_cache_size=0)  # fmt: skip
