"""The CUDA layer on a real GPU: buffers, pinned copies, executor, CUDA graphs, real OOM.

Correctness only: no test here asserts a speed. The issue's speed target (pinned async copies
>= 80% of plain cudaMemcpy bandwidth) is measured and reported by
benchmarks/bench_cuda_runtime.py, never asserted in a test (timings are machine noise).
"""

from __future__ import annotations

import logging
import shutil
import subprocess

import numpy as np
import pytest

from paddleocr_trt.backend.cuda import (
    CudaError,
    CudaExecutor,
    cuda_available,
    device_count,
    device_info,
    group_by_model,
    run_with_backoff,
)
from paddleocr_trt.backend.cuda.enqueuers import DeviceCopyEnqueuer
from paddleocr_trt.backend.cuda.memory import DeviceBuffer, PinnedBuffer
from paddleocr_trt.backend.cuda.runtime import check, cudart, get_device, mem_get_info
from paddleocr_trt.backend.cuda.stream import Stream
from paddleocr_trt.errors import OutOfMemoryError

_OK, _REASON = cuda_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _OK, reason=f"needs CUDA: {_REASON}")]

GiB = 1 << 30


def _pointer(ptr: int) -> tuple[str, int]:
    """(memory type name, device) of an address, from the driver."""
    attrs = check(cudart().cudaPointerGetAttributes(ptr), "cudaPointerGetAttributes")
    return attrs.type.name, int(attrs.device)


@pytest.fixture
def affine_enqueuer():
    from cuda_test_kernels import AffineKernelEnqueuer

    try:
        return AffineKernelEnqueuer(0, a=2.0, b=1.0)
    except Exception as exc:
        pytest.skip(f"cannot build the NVRTC test kernel here: {exc}")


# -- runtime / devices -------------------------------------------------------------------------


def test_devices_match_nvidia_smi() -> None:
    n = device_count()
    infos = [device_info(i) for i in range(n)]
    assert n >= 1
    for info in infos:
        assert info.name and info.total_memory > 1 * GiB
        assert info.compute_capability[0] >= 3
        assert info.uuid.startswith("GPU-")
    if shutil.which("nvidia-smi") is None:
        pytest.skip("nvidia-smi not on PATH: counts checked, names not cross-checked")
    rows = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,uuid,compute_cap", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    smi = {}
    for line in rows.splitlines():
        name, uuid, cc = (p.strip() for p in line.split(","))
        smi[uuid] = (name, cc)
    assert len(smi) == n  # no CUDA_VISIBLE_DEVICES on the test machine
    for info in infos:
        name, cc = smi[info.uuid]
        assert info.name == name
        assert f"{info.compute_capability[0]}.{info.compute_capability[1]}" == cc


def test_group_by_model_real_devices() -> None:
    ids = list(range(device_count()))
    groups = group_by_model(ids)
    assert sorted(i for g in groups for i in g.device_ids) == ids
    for g in groups:
        for i in g.device_ids:
            assert device_info(i).name == g.name
            assert device_info(i).compute_capability == g.compute_capability


# -- memory and copies -------------------------------------------------------------------------


def test_device_buffer_grows_geometrically_and_is_reused() -> None:
    buf = DeviceBuffer(0)
    assert buf.ensure(1000) is True
    first = buf.ptr
    assert buf.capacity == 1000 and _pointer(first) == ("cudaMemoryTypeDevice", 0)
    assert buf.ensure(10) is False and buf.ptr == first  # shrinking reuses
    assert buf.ensure(1000) is False and buf.ptr == first
    assert buf.ensure(1001) is True and buf.capacity == 2000  # doubles, not exact
    assert buf.ensure(1900) is False
    buf.free()
    assert buf.ptr == 0 and buf.capacity == 0


def test_pinned_h2d_d2h_roundtrip_is_exact() -> None:
    rng = np.random.default_rng(0)
    data = rng.standard_normal((16, 3, 48, 320)).astype(np.float32)
    src, dst, dev = PinnedBuffer(), PinnedBuffer(), DeviceBuffer(0)
    for b in (src, dst, dev):
        b.ensure(data.nbytes)
    assert _pointer(src.ptr)[0] == "cudaMemoryTypeHost"
    stream = Stream(0)
    src.view(data.shape, data.dtype)[...] = data
    dst.view(data.shape, data.dtype)[...] = 0
    stream.copy_h2d(dev.ptr, src.ptr, data.nbytes)
    stream.copy_d2h(dst.ptr, dev.ptr, data.nbytes)
    stream.synchronize()
    np.testing.assert_array_equal(dst.view(data.shape, data.dtype), data)
    stream.close()


def test_async_copy_from_pinned_returns_before_the_copy_ends() -> None:
    """A behaviour check (asynchrony), not a speed check: the call must not block the host."""
    rt = cudart()
    nbytes = 512 << 20
    host, dev = PinnedBuffer(), DeviceBuffer(0)
    host.ensure(nbytes)
    dev.ensure(nbytes)
    stream = Stream(0)
    stream.copy_h2d(dev.ptr, host.ptr, nbytes)
    (err,) = rt.cudaStreamQuery(stream.raw)
    assert err == rt.cudaError_t.cudaErrorNotReady
    stream.synchronize()
    assert rt.cudaStreamQuery(stream.raw)[0] == rt.cudaError_t.cudaSuccess
    stream.close()


def test_real_oom_is_an_exception_and_the_device_stays_usable() -> None:
    free, _ = mem_get_info(0)
    buf = DeviceBuffer(0)
    with pytest.raises(OutOfMemoryError, match="cudaErrorMemoryAllocation"):
        buf.ensure(free + 4 * GiB)
    assert buf.capacity == 0 and buf.ptr == 0
    assert buf.ensure(1 << 20) is True  # no sticky error
    with CudaExecutor(DeviceCopyEnqueuer([np.float32]), input_dtypes=[np.float32],
                      output_dtypes=[np.float32]) as ex:  # fmt: skip
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        np.testing.assert_array_equal(ex.run([x])[0], x)


def test_growth_near_the_limit_falls_back_to_the_exact_size() -> None:
    free, _ = mem_get_info(0)
    buf = DeviceBuffer(0)
    first = int(free * 0.55)
    second = int(free * 0.60)  # doubling would need 1.1x free
    buf.ensure(first)
    assert buf.ensure(second) is True
    assert buf.capacity == second
    buf.free()


# -- executor ----------------------------------------------------------------------------------


def _shapes():
    return [
        (1, 3, 32, 32),
        (4, 3, 64, 96),
        (2, 3, 8, 8),
        (4, 3, 64, 96),
        (1, 1, 1, 1),
        (8, 3, 48, 320),
    ]


def test_executor_identity_many_shapes_reuses_buffers() -> None:
    from cuda_test_kernels import RecordingCopyEnqueuer

    enq = RecordingCopyEnqueuer([np.float32, np.int32])
    rng = np.random.default_rng(1)
    with CudaExecutor(enq, input_dtypes=[np.float32, np.int32],
                      output_dtypes=[np.float32, np.int32]) as ex:  # fmt: skip
        reallocs = []
        for shape in _shapes():
            a = rng.standard_normal(shape).astype(np.float32)
            b = rng.integers(-1000, 1000, size=shape[:2], dtype=np.int32)
            out_a, out_b = ex.run([a, b])
            np.testing.assert_array_equal(out_a, a)
            np.testing.assert_array_equal(out_b, b)
            assert out_a.shape == shape and out_a.dtype == np.float32
            reallocs.append(ex.stats.buffer_reallocations)
        # grows for shapes 0, 1 and the last (largest); shrinking shapes reuse the same addresses
        assert reallocs == [1, 2, 2, 2, 2, 3]
        assert enq.bound[1] == enq.bound[2] == enq.bound[3] == enq.bound[4]
        assert enq.bound[5] != enq.bound[4]
        in_ptr = enq.bound[-1][0][0]
        assert _pointer(in_ptr) == ("cudaMemoryTypeDevice", 0)
        stats = ex.stats
        assert stats.calls == 6 and stats.eager_calls == 6 and stats.graph_launches == 0
        assert stats.total_host_s > 0 and stats.mean_host_s > 0


def test_executor_outputs_are_fresh_copies_and_dtypes_are_converted() -> None:
    with CudaExecutor(DeviceCopyEnqueuer([np.float32]), input_dtypes=[np.float32],
                      output_dtypes=[np.float32]) as ex:  # fmt: skip
        x1 = np.full((2, 5), 1.5, dtype=np.float64)  # float64 in -> float32 staging
        (y1,) = ex.run([x1])
        (y2,) = ex.run([np.full((2, 5), 7.0, dtype=np.float32)])
        assert y1.dtype == np.float32
        np.testing.assert_array_equal(y1, np.full((2, 5), 1.5, dtype=np.float32))
        np.testing.assert_array_equal(y2, 7.0)
        non_contiguous = np.arange(40, dtype=np.float32).reshape(5, 8)[:, ::2]
        np.testing.assert_array_equal(ex.run([non_contiguous])[0], non_contiguous)
        with pytest.raises(ValueError):
            ex.run([x1, x1])
    with pytest.raises(CudaError, match="after close"):
        ex.run([x1])


def _affine_sequence(ex: CudaExecutor, shapes, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    outs = []
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        (y,) = ex.run([x])
        np.testing.assert_array_equal(y, 2.0 * x + 1.0)  # fresh data each call, graphs too
        outs.append(y)
    return outs


def test_cuda_graphs_replay_repeated_shapes_with_identical_results(affine_enqueuer) -> None:
    from cuda_test_kernels import AffineKernelEnqueuer

    a, b = (1, 3, 64, 64), (6, 3, 48, 320)
    shapes = [a, a, a, b, b, a, a]
    with CudaExecutor(affine_enqueuer, input_dtypes=[np.float32], output_dtypes=[np.float32],
                      use_cuda_graphs=True) as ex:  # fmt: skip
        with_graphs = _affine_sequence(ex, shapes, seed=5)
        s = ex.stats
    # a: eager, eager + capture, replay. b is larger: its first call reallocates, which drops
    # a's graph; b: eager, eager + capture. a again: eager + capture (a was seen), replay.
    assert s.graph_invalidations == 1
    assert s.eager_calls == 5
    assert s.graph_captures == 3  # a, b, a
    assert s.graph_launches == 2
    # the kernel ran only for eager calls and captures; replays do not call enqueue
    assert affine_enqueuer.launches == s.eager_calls + s.graph_captures
    with CudaExecutor(AffineKernelEnqueuer(0), input_dtypes=[np.float32],
                      output_dtypes=[np.float32], use_cuda_graphs=False) as ex:  # fmt: skip
        without = _affine_sequence(ex, shapes, seed=5)
        assert ex.stats.graph_launches == 0 and ex.stats.eager_calls == len(shapes)
    for g, e in zip(with_graphs, without, strict=True):
        np.testing.assert_array_equal(g, e)


def test_cuda_graphs_per_shape_bucket_share_one_set_of_buffers(affine_enqueuer) -> None:
    small, big = (2, 3, 16, 16), (4, 3, 256, 256)
    shapes = [big, small, small, small, big, big, small]
    with CudaExecutor(affine_enqueuer, input_dtypes=[np.float32], output_dtypes=[np.float32],
                      use_cuda_graphs=True) as ex:  # fmt: skip
        _affine_sequence(ex, shapes, seed=9)
        s = ex.stats
    assert s.buffer_reallocations == 1  # the first (largest) call sized everything
    assert s.graph_invalidations == 0
    # big, small: eager; small: eager + capture; small: replay; big: eager + capture;
    # big: replay; small: replay after re-setting the enqueuer's shapes (it was left at big)
    assert (s.eager_calls, s.graph_captures, s.graph_launches) == (4, 2, 3)
    assert s.shape_resets == 1


def test_capture_failure_falls_back_to_eager(caplog: pytest.LogCaptureFixture) -> None:
    from cuda_test_kernels import SyncingCopyEnqueuer

    with CudaExecutor(SyncingCopyEnqueuer([np.float32]), input_dtypes=[np.float32],
                      output_dtypes=[np.float32], use_cuda_graphs=True) as ex:  # fmt: skip
        x = np.arange(24, dtype=np.float32).reshape(2, 12)
        with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
            for i in range(4):
                np.testing.assert_array_equal(ex.run([x + i])[0], x + i)
        assert ex.use_cuda_graphs is False
        assert ex.stats.graph_launches == 0 and ex.stats.eager_calls == 4
    assert any("CUDA graph capture failed" in r.getMessage() for r in caplog.records)


def test_run_with_backoff_halves_on_real_gpu_oom(caplog: pytest.LogCaptureFixture) -> None:
    from cuda_test_kernels import WorkspaceCopyEnqueuer

    free, _ = mem_get_info(0)
    per_item = free // 3 + (64 << 20)  # batch 8 and 4 exceed free memory, 2 fits
    enq = WorkspaceCopyEnqueuer(per_item)
    rng = np.random.default_rng(3)
    batch = rng.standard_normal((8, 3, 32, 100)).astype(np.float32)
    with (
        CudaExecutor(enq, input_dtypes=[np.float32], output_dtypes=[np.float32]) as ex,
        caplog.at_level(logging.WARNING, logger="paddleocr_trt"),
    ):
        (out,) = run_with_backoff(batch, lambda x: ex.run([x]), what="rec batch")
    enq.workspace.free()
    np.testing.assert_array_equal(out, batch)
    assert enq.attempted == [8, 4, 2]  # same shapes again: not re-declared
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(msgs) == 2 and all("rec batch: out of GPU memory" in m for m in msgs)


# -- devices -----------------------------------------------------------------------------------


def _stream_device(stream_handle: int) -> int | None:
    rt = cudart()
    if not hasattr(rt, "cudaStreamGetDevice"):
        return None
    return int(check(rt.cudaStreamGetDevice(stream_handle), "cudaStreamGetDevice"))


def test_executor_keeps_buffers_and_stream_on_its_device_and_restores_current() -> None:
    from cuda_test_kernels import RecordingCopyEnqueuer

    before = get_device()
    enq = RecordingCopyEnqueuer([np.float32])
    with CudaExecutor(enq, input_dtypes=[np.float32], output_dtypes=[np.float32],
                      device_id=0) as ex:  # fmt: skip
        x = np.ones((2, 3), dtype=np.float32)
        np.testing.assert_array_equal(ex.run([x])[0], x)
        (in_ptr,), (out_ptr,) = enq.bound[-1]
        assert _pointer(in_ptr) == ("cudaMemoryTypeDevice", 0)
        assert _pointer(out_ptr) == ("cudaMemoryTypeDevice", 0)
        assert _stream_device(ex.stream_handle) in (None, 0)
    assert get_device() == before


@pytest.mark.skipif(
    _OK and device_count() < 2, reason="needs >= 2 CUDA devices; this machine has fewer"
)
def test_executors_on_several_devices_each_use_their_own() -> None:
    from cuda_test_kernels import RecordingCopyEnqueuer

    n = device_count()
    enqs = [RecordingCopyEnqueuer([np.float32]) for _ in range(n)]
    executors = [
        CudaExecutor(e, input_dtypes=[np.float32], output_dtypes=[np.float32], device_id=d)
        for d, e in enumerate(enqs)
    ]
    before = get_device()
    try:
        for round_ in range(2):  # interleaved on one thread
            for d, ex in enumerate(executors):
                x = np.full((4, 8), d * 10 + round_, dtype=np.float32)
                np.testing.assert_array_equal(ex.run([x])[0], x)
                (in_ptr,), (out_ptr,) = enqs[d].bound[-1]
                assert _pointer(in_ptr) == ("cudaMemoryTypeDevice", d)
                assert _pointer(out_ptr) == ("cudaMemoryTypeDevice", d)
                assert _stream_device(ex.stream_handle) in (None, d)
                assert get_device() == before
    finally:
        for ex in executors:
            ex.close()
