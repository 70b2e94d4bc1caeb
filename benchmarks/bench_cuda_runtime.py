"""CUDA layer speed on a real GPU: copy bandwidth and the executor's per-call host overhead.

Run:  pytest benchmarks/bench_cuda_runtime.py --benchmark-json=bench_cuda.json
Then: python benchmarks/bench_cuda_runtime.py bench_cuda.json   (prints the summary table)

Issue target: pinned async copies reach >= 80% of a plain synchronous cudaMemcpy's bandwidth.
That is a reported number, not a test assertion.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from paddleocr_trt.backend.cuda import CudaExecutor, cuda_available
from paddleocr_trt.backend.cuda.enqueuers import DeviceCopyEnqueuer
from paddleocr_trt.backend.cuda.memory import DeviceBuffer, PinnedBuffer
from paddleocr_trt.backend.cuda.runtime import check, cudart
from paddleocr_trt.backend.cuda.stream import Stream

_OK, _REASON = cuda_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _OK, reason=f"needs CUDA: {_REASON}")]

#: name -> (shape, timed rounds); float32
SIZES = {
    "1x3x960x960": ((1, 3, 960, 960), 40),
    "16x3x48x320": ((16, 3, 48, 320), 100),
    "50x3x960x960": ((50, 3, 960, 960), 6),
}
METHODS = ("memcpy_sync_pageable", "async_pinned", "staged_async_pinned")


@pytest.fixture(scope="module")
def stream():
    s = Stream(0)
    yield s
    s.close()


def _copy_fn(method: str, direction: str, shape: tuple[int, ...], stream: Stream) -> Callable:
    rt = cudart()
    data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    n = data.nbytes
    dev = DeviceBuffer(0)
    dev.ensure(n)
    h2d = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
    d2h = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
    keep = [dev, data]
    if method == "memcpy_sync_pageable":
        # What code without pinned buffers does: cudaMemcpy straight from a numpy array.
        ptr = data.ctypes.data
        if direction == "h2d":
            return lambda: check(rt.cudaMemcpy(dev.ptr, ptr, n, h2d), "cudaMemcpy"), keep
        return lambda: check(rt.cudaMemcpy(ptr, dev.ptr, n, d2h), "cudaMemcpy"), keep
    pinned = PinnedBuffer()
    pinned.ensure(n)
    view = pinned.view(shape, np.float32)
    view[...] = data
    keep.append(pinned)
    if method == "async_pinned":  # the copy alone, from/to page-locked memory

        def run() -> None:
            if direction == "h2d":
                stream.copy_h2d(dev.ptr, pinned.ptr, n)
            else:
                stream.copy_d2h(pinned.ptr, dev.ptr, n)
            stream.synchronize()

        return run, keep

    out = np.empty_like(data)

    def staged() -> None:  # what CudaExecutor does: numpy <-> pinned staging + async copy
        if direction == "h2d":
            np.copyto(view, data)
            stream.copy_h2d(dev.ptr, pinned.ptr, n)
            stream.synchronize()
        else:
            stream.copy_d2h(pinned.ptr, dev.ptr, n)
            stream.synchronize()
            np.copyto(out, view)

    return staged, keep


@pytest.mark.parametrize("direction", ["h2d", "d2h"])
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("method", METHODS)
def test_copy_bandwidth(benchmark, stream: Stream, method: str, size: str, direction: str) -> None:
    shape, rounds = SIZES[size]
    fn, keep = _copy_fn(method, direction, shape, stream)
    nbytes = int(np.prod(shape)) * 4
    benchmark.group = f"copy {direction} {size}"
    benchmark.extra_info.update(
        {"kind": "copy", "method": method, "size": size, "direction": direction, "nbytes": nbytes}
    )
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=2)
    median = benchmark.stats.stats.median
    benchmark.extra_info["GBps_median"] = nbytes / median / 1e9
    for b in keep:
        if hasattr(b, "free"):
            b.free()


@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "cuda_graph"])
def test_executor_call_overhead(benchmark, graphs: bool) -> None:
    """Tiny tensors, identity copy: the time is the executor's own host work plus launch latency."""
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    with CudaExecutor(DeviceCopyEnqueuer([np.float32]), input_dtypes=[np.float32],
                      output_dtypes=[np.float32], use_cuda_graphs=graphs) as ex:  # fmt: skip
        for _ in range(3):  # warm-up (and capture)
            ex.run([x])
        before = ex.stats
        benchmark.group = "executor per-call overhead"
        result = benchmark(ex.run, [x])
        after = ex.stats
    np.testing.assert_array_equal(result[0], x)
    calls = after.calls - before.calls
    benchmark.extra_info.update(
        {
            "kind": "executor",
            "graphs": graphs,
            "host_us_mean": (after.total_host_s - before.total_host_s) / calls * 1e6,
            "sync_wait_us_mean": (after.total_sync_wait_s - before.total_sync_wait_s) / calls * 1e6,
            "graph_launches": after.graph_launches - before.graph_launches,
        }
    )


@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "cuda_graph"])
def test_executor_many_small_kernels(benchmark, graphs: bool) -> None:
    """100 tiny kernel launches per call, like an engine of many small layers."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "gpu"))
    from cuda_test_kernels import AffineKernelEnqueuer

    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    enq = AffineKernelEnqueuer(0, repeats=100)
    with CudaExecutor(enq, input_dtypes=[np.float32], output_dtypes=[np.float32],
                      use_cuda_graphs=graphs) as ex:  # fmt: skip
        for _ in range(3):
            ex.run([x])
        before = ex.stats
        benchmark.group = "executor, 100 kernels per call"
        result = benchmark(ex.run, [x])
        after = ex.stats
    np.testing.assert_array_equal(result[0], 2.0 * x + 1.0)
    calls = after.calls - before.calls
    benchmark.extra_info.update(
        {
            "kind": "executor",
            "graphs": graphs,
            "host_us_mean": (after.total_host_s - before.total_host_s) / calls * 1e6,
            "sync_wait_us_mean": (after.total_sync_wait_s - before.total_sync_wait_s) / calls * 1e6,
        }
    )


def test_raw_cuda_python_call_floor(benchmark, stream: Stream) -> None:
    """The same H2D + D2D + D2H + sync issued directly: the floor the executor adds to."""
    n = 32
    host, d_in, d_out = PinnedBuffer(), DeviceBuffer(0), DeviceBuffer(0)
    for b in (host, d_in, d_out):
        b.ensure(n)

    def run() -> None:
        stream.copy_h2d(d_in.ptr, host.ptr, n)
        stream.copy_d2d(d_out.ptr, d_in.ptr, n)
        stream.copy_d2h(host.ptr, d_out.ptr, n)
        stream.synchronize()

    benchmark.group = "executor per-call overhead"
    benchmark.extra_info["kind"] = "raw"
    benchmark(run)


def summarize(path: str) -> str:
    """A plain-text table of the JSON that --benchmark-json wrote."""
    data = json.loads(Path(path).read_text())
    rows = {}
    lines = []
    for b in data["benchmarks"]:
        info = b["extra_info"]
        if info.get("kind") == "copy":
            key = (info["size"], info["direction"])
            rows.setdefault(key, {})[info["method"]] = info["GBps_median"]
    lines.append("copy bandwidth, GB/s (median)      plain  pinned  staged  pinned/plain  >=0.8")
    for (size, direction), m in rows.items():
        plain, pinned = m.get("memcpy_sync_pageable"), m.get("async_pinned")
        staged = m.get("staged_async_pinned")
        ratio = pinned / plain if plain and pinned else float("nan")
        lines.append(
            f"  {size:>13} {direction}             {plain:6.1f}  {pinned:6.1f}  {staged:6.1f}"
            f"  {ratio:12.2f}  {'yes' if ratio >= 0.8 else 'NO'}"
        )
    lines.append("per-call (tiny tensors)               median us   mean us  host us (stats)")
    for b in data["benchmarks"]:
        info = b["extra_info"]
        if info.get("kind") in ("executor", "raw"):
            name = b["name"].replace("test_", "")
            host = info.get("host_us_mean")
            host_s = f"{host:8.1f}" if host is not None else "       -"
            lines.append(
                f"  {name:<36} {b['stats']['median'] * 1e6:8.1f}  {b['stats']['mean'] * 1e6:8.1f}"
                f"  {host_s}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(summarize(sys.argv[1]) + "\n")
