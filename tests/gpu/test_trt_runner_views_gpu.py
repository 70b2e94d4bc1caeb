"""TensorRTRunner input leases on a real GPU: producers stack into pinned buffers of real
CudaExecutors, the transfers use them in place, threads sharing a runner keep their data.

The runner is real; its engine is a stand-in (``standin_trt.py``, NOT TensorRT: none on the
measuring machine) whose enqueuer copies every input to an output on the device, so each output
is exactly what reached the GPU.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from paddleocr_trt.backend.cuda import cuda_available
from paddleocr_trt.backend.cuda.enqueuers import DeviceCopyEnqueuer
from paddleocr_trt.backend.cuda.runtime import check, cudart
from paddleocr_trt.profiles import ShapeNotCoveredError, ShapeProfile

_OK, _REASON = cuda_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _OK, reason=f"needs CUDA: {_REASON}")]

#: det-like engine: uint8 NHWC images + one threshold per image, batch <= 2
PROFILE = {
    "x": ShapeProfile((1, 8, 8, 3), (1, 64, 64, 3), (2, 128, 128, 3)),
    "db_thresh": ShapeProfile((1,), (1,), (2,)),
}


def _runner():
    from standin_trt import StandInEngine, standin_runner

    dtypes = [np.uint8, np.float32]
    engine = StandInEngine(
        [("x", np.uint8), ("db_thresh", np.float32)],
        [("x_out", np.uint8), ("thresh_out", np.float32)],
        [PROFILE],
        lambda: DeviceCopyEnqueuer(dtypes),
    )
    return standin_runner(engine, "det-standin")


class _Predictor:
    """What the det producer reads from its PaddleX predictor: the runner and the threshold."""

    def __init__(self, runner) -> None:
        self.runner = runner
        self.thresh = 0.3


class _PostOp:
    thresh = 0.3


def _images(n: int, h: int, w: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _memory_type(ptr: int) -> str:
    return check(cudart().cudaPointerGetAttributes(ptr), "cudaPointerGetAttributes").type.name


def test_the_det_producer_stacks_into_pinned_buffers_used_in_place() -> None:
    from paddleocr_trt.fusion.predictors import StackUint8WithThresh
    from paddleocr_trt.fusion.views import input_view_scope

    with _runner() as runner:
        producer = StackUint8WithThresh(_Predictor(runner), _PostOp())
        imgs = _images(2, 96, 120, seed=1)
        with input_view_scope():
            x, thresh = producer(imgs)
            assert _memory_type(x.ctypes.data) == "cudaMemoryTypeHost"
            out_x, out_t = runner.infer([x, thresh])
        ex = runner._executors[0]
        assert (ex.stats.zero_copy_inputs, ex.stats.staged_inputs) == (2, 0)
        np.testing.assert_array_equal(out_x, np.stack(imgs))
        np.testing.assert_array_equal(out_t, np.full(2, np.float32(0.3)))
        plain_x, _ = producer(imgs)  # outside a scope: a plain array, staged as before
        assert _memory_type(plain_x.ctypes.data) != "cudaMemoryTypeHost"
        again, _ = runner.infer(producer(imgs))
        assert (ex.stats.zero_copy_inputs, ex.stats.staged_inputs) == (2, 2)
        np.testing.assert_array_equal(again, np.stack(imgs))


def test_uncovered_and_split_shapes_get_plain_arrays() -> None:
    with _runner() as runner:
        assert runner.input_views([(1, 200, 200, 3), (1,)]) is None  # outside the profile
        with pytest.raises(ShapeNotCoveredError):  # no fallback here: raised, as before
            runner.infer([np.zeros((1, 200, 200, 3), np.uint8), np.zeros(1, np.float32)])
        assert runner.input_views([(3, 64, 64, 3), (3,)]) is None  # above max batch: split
        imgs = np.stack(_images(3, 64, 64, seed=2))
        out_x, _ = runner.infer([imgs, np.full(3, 0.5, np.float32)])
        np.testing.assert_array_equal(out_x, imgs)


def test_threads_sharing_a_runner_keep_their_own_data() -> None:
    from paddleocr_trt.fusion.predictors import StackUint8WithThresh
    from paddleocr_trt.fusion.views import input_view_scope

    errors: list[BaseException] = []
    wrong: list[tuple[int, int]] = []
    start = threading.Barrier(6)

    def work(seed: int) -> None:
        try:
            producer = StackUint8WithThresh(_Predictor(runner), _PostOp())
            start.wait()
            for rep in range(25):
                imgs = _images(1 + rep % 2, 64 + 8 * (seed % 3), 96, seed=100 * seed + rep)
                with input_view_scope():
                    x = producer(imgs)
                    out_x, _ = runner.infer(x)
                if not np.array_equal(out_x, np.stack(imgs)):
                    wrong.append((seed, rep))
        except BaseException as exc:  # reported below
            errors.append(exc)

    with _runner() as runner:
        threads = [threading.Thread(target=work, args=(s,)) for s in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        stats = runner._executors[0].stats
    assert not errors, errors
    assert not wrong, wrong
    assert stats.calls == 6 * 25
    assert stats.zero_copy_inputs > 0  # (a busy profile gives plain arrays: staged_inputs)
