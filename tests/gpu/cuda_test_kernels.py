"""Real enqueuers for the GPU tests: an NVRTC-compiled kernel and a workspace-hungry copy.

Neither is TensorRT; both do real work on the executor's stream so the executor's buffers,
copies, CUDA graphs and OOM handling are exercised for real.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from paddleocr_trt.backend.cuda.enqueuers import DeviceCopyEnqueuer
from paddleocr_trt.backend.cuda.memory import DeviceBuffer
from paddleocr_trt.backend.cuda.runtime import check, cudart, device_info, device_scope

_AFFINE_SRC = rb"""
extern "C" __global__ void affine(const float* x, float* y, float a, float b,
                                  unsigned long long n) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + b;
}
"""


def _nvrtc_check(result: tuple, what: str) -> object:
    from cuda.bindings import nvrtc

    err = result[0]
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"{what}: {err}")
    return result[1] if len(result) > 1 else None


def _drv_check(result: tuple, what: str) -> object:
    from cuda.bindings import driver

    err = result[0]
    if err != driver.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"{what}: {err}")
    return result[1] if len(result) > 1 else None


def _compile(src: bytes, name: bytes, device_id: int):
    """NVRTC-compile ``src`` for the device's arch; (module, function ``name``)."""
    from cuda.bindings import driver, nvrtc

    info = device_info(device_id)
    prog = _nvrtc_check(nvrtc.nvrtcCreateProgram(src, name + b".cu", 0, [], []), "create")
    opts_b = [f"--gpu-architecture={info.arch}".encode()]
    err = nvrtc.nvrtcCompileProgram(prog, len(opts_b), opts_b)[0]
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        size = _nvrtc_check(nvrtc.nvrtcGetProgramLogSize(prog), "log size")
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        raise RuntimeError(f"NVRTC compile failed: {log.decode(errors='replace')}")
    size = _nvrtc_check(nvrtc.nvrtcGetCUBINSize(prog), "cubin size")
    cubin = b" " * size
    _nvrtc_check(nvrtc.nvrtcGetCUBIN(prog, cubin), "cubin")
    _drv_check(driver.cuInit(0), "cuInit")
    with device_scope(device_id):
        check(cudart().cudaFree(0), "cudaFree(0)")  # make the primary context current
        module = _drv_check(driver.cuModuleLoadData(cubin), "cuModuleLoadData")
        func = _drv_check(driver.cuModuleGetFunction(module, name), "cuModuleGetFunction")
    return module, func


def _launch(func, n_threads: int, stream_handle: int, *args: np.ndarray) -> None:
    """1-D launch of ``func`` over ``n_threads`` with scalar args given as 1-element arrays."""
    from cuda.bindings import driver

    params = np.array([a.ctypes.data for a in args], dtype=np.uint64)
    block = 256
    grid = max(1, (n_threads + block - 1) // block)
    _drv_check(
        driver.cuLaunchKernel(
            func, grid, 1, 1, block, 1, 1, 0, driver.CUstream(stream_handle), params.ctypes.data, 0
        ),
        "cuLaunchKernel",
    )


def _u64(v: int) -> np.ndarray:
    return np.array([v], dtype=np.uint64)


class AffineKernelEnqueuer:
    """y = a*x + b on float32 (compiled for the device's arch).

    ``repeats`` launches the same kernel that many times per call (same result), standing in
    for an engine made of many small kernels, where CUDA graphs save the most launch overhead.
    """

    def __init__(
        self, device_id: int = 0, a: float = 2.0, b: float = 1.0, *, repeats: int = 1
    ) -> None:
        self.a, self.b = a, b
        self.repeats = repeats
        self._module, self._func = _compile(_AFFINE_SRC, b"affine", device_id)
        self._n = 0
        self._x = 0
        self._y = 0
        self.launches = 0

    def set_input_shapes(self, shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        (shape,) = shapes
        self._n = int(np.prod(shape, dtype=np.int64))
        return [tuple(shape)]

    def bind(self, input_ptrs: Sequence[int], output_ptrs: Sequence[int]) -> None:
        (self._x,) = input_ptrs
        (self._y,) = output_ptrs

    def enqueue(self, stream_handle: int) -> None:
        from cuda.bindings import driver

        if self._n == 0:
            return
        args = [
            np.array([self._x], dtype=np.uint64),
            np.array([self._y], dtype=np.uint64),
            np.array([self.a], dtype=np.float32),
            np.array([self.b], dtype=np.float32),
            np.array([self._n], dtype=np.uint64),
        ]
        params = np.array([a.ctypes.data for a in args], dtype=np.uint64)
        block = 256
        grid = (self._n + block - 1) // block
        stream = driver.CUstream(stream_handle)
        for _ in range(self.repeats):
            _drv_check(
                driver.cuLaunchKernel(
                    self._func, grid, 1, 1, block, 1, 1, 0, stream, params.ctypes.data, 0
                ),
                "cuLaunchKernel",
            )
        self.launches += 1


class RecordingCopyEnqueuer(DeviceCopyEnqueuer):
    """The identity copy, remembering every address it was bound to (pointer-stability checks)."""

    def __init__(self, dtypes: Sequence[np.dtype | type]) -> None:
        super().__init__(dtypes)
        self.bound: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def bind(self, input_ptrs: Sequence[int], output_ptrs: Sequence[int]) -> None:
        super().bind(input_ptrs, output_ptrs)
        self.bound.append((tuple(input_ptrs), tuple(output_ptrs)))


class WorkspaceCopyEnqueuer(DeviceCopyEnqueuer):
    """Identity through a scratch buffer of ``bytes_per_item`` per batch item.

    Like TensorRT's activation memory, the demand scales with the batch; the workspace is a real
    cudaMalloc, so a batch that does not fit raises OutOfMemoryError from set_input_shapes.
    """

    def __init__(self, bytes_per_item: int, device_id: int = 0) -> None:
        super().__init__([np.float32])
        self.bytes_per_item = bytes_per_item
        self.workspace = DeviceBuffer(device_id, growth=1.0)
        self.attempted: list[int] = []

    def set_input_shapes(self, shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        out = super().set_input_shapes(shapes)
        batch = shapes[0][0]
        self.attempted.append(batch)
        self.workspace.ensure(batch * self.bytes_per_item)
        return out

    def enqueue(self, stream_handle: int) -> None:
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        n = self._nbytes[0]
        ws = self.workspace.ptr
        check(rt.cudaMemcpyAsync(ws, self._in[0], n, kind, stream_handle), "in->workspace")
        check(rt.cudaMemcpyAsync(self._out[0], ws, n, kind, stream_handle), "workspace->out")


class SyncingCopyEnqueuer(DeviceCopyEnqueuer):
    """Synchronises its stream inside enqueue: legal eagerly, illegal during graph capture."""

    def enqueue(self, stream_handle: int) -> None:
        super().enqueue(stream_handle)
        check(cudart().cudaStreamSynchronize(stream_handle), "cudaStreamSynchronize")


_HOST_PARAMS_SRC = rb"""
extern "C" __global__ void affine_dev_n(const float* x, float* y, float a, float b,
                                        const unsigned long long* n) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i < *n) y[i] = a * x[i] + b;
}
"""


class HostShapeStateEnqueuer:
    """y = 2x + 1 with the element count read, at run time, from host state set by shapes.

    Like a TensorRT execution context, ``set_input_shapes`` writes shape-dependent state into
    host memory the enqueued work reads when it runs (here: an H2D copy of the element count
    from a pinned buffer, then a kernel that reads it on the device). A captured graph replays
    that copy from the same host address, so replaying a graph of other shapes than the last
    ones set computes the wrong number of elements unless the shapes are re-set first.
    The launch grid is sized for ``max_elems`` so the graph never limits the count itself.
    """

    def __init__(self, device_id: int = 0, *, max_elems: int = 1 << 22) -> None:
        from paddleocr_trt.backend.cuda.memory import PinnedBuffer

        self._module, self._func = _compile(_HOST_PARAMS_SRC, b"affine_dev_n", device_id)
        self.max_elems = max_elems
        self._host_n = PinnedBuffer()
        self._host_n.ensure(8)
        self._dev_n = DeviceBuffer(device_id)
        self._dev_n.ensure(8)
        self._x = self._y = 0
        self.shape_sets: list[tuple[tuple[int, ...], ...]] = []

    def set_input_shapes(self, shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        (shape,) = shapes
        n = int(np.prod(shape, dtype=np.int64))
        if n > self.max_elems:
            raise ValueError(f"{n} elements > max_elems {self.max_elems}")
        self._host_n.view((1,), np.uint64)[0] = n
        self.shape_sets.append(tuple(tuple(s) for s in shapes))
        return [tuple(shape)]

    def bind(self, input_ptrs: Sequence[int], output_ptrs: Sequence[int]) -> None:
        (self._x,) = input_ptrs
        (self._y,) = output_ptrs

    def enqueue(self, stream_handle: int) -> None:
        rt = cudart()
        h2d = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(
            rt.cudaMemcpyAsync(self._dev_n.ptr, self._host_n.ptr, 8, h2d, stream_handle),
            "params H2D",
        )
        _launch(
            self._func,
            self.max_elems,
            stream_handle,
            _u64(self._x),
            _u64(self._y),
            np.array([2.0], dtype=np.float32),
            np.array([1.0], dtype=np.float32),
            _u64(self._dev_n.ptr),
        )


_ARGMAX_SRC = rb"""
extern "C" __global__ void argmax_i32(const float* x, int* idx, float* best,
                                      unsigned long long rows, unsigned long long classes) {
    unsigned long long r = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float* row = x + r * classes;
    int k = 0; float m = row[0];
    for (unsigned long long c = 1; c < classes; ++c) if (row[c] > m) { m = row[c]; k = (int)c; }
    idx[r] = k; best[r] = m;
}
extern "C" __global__ void argmax_i64(const float* x, long long* idx, float* best,
                                      unsigned long long rows, unsigned long long classes) {
    unsigned long long r = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float* row = x + r * classes;
    long long k = 0; float m = row[0];
    for (unsigned long long c = 1; c < classes; ++c)
        if (row[c] > m) { m = row[c]; k = (long long)c; }
    idx[r] = k; best[r] = m;
}
"""


class ArgmaxEnqueuer:
    """Rec's engine-side decode: logits (N, T, C) float32 -> indices (N, T) + max (N, T) float32.

    What a rec engine with an ArgMax/ReduceMax head returns instead of the (N, T, 6625) tensor.
    """

    def __init__(self, device_id: int = 0, index_dtype: type = np.int32) -> None:
        self.index_dtype = np.dtype(index_dtype)
        name = b"argmax_i32" if self.index_dtype == np.int32 else b"argmax_i64"
        self._module, self._func = _compile(_ARGMAX_SRC, name, device_id)
        self._rows = self._classes = 0
        self._ptrs: tuple[int, int, int] = (0, 0, 0)

    def set_input_shapes(self, shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        ((n, t, c),) = shapes
        self._rows, self._classes = n * t, c
        return [(n, t), (n, t)]

    def bind(self, input_ptrs: Sequence[int], output_ptrs: Sequence[int]) -> None:
        self._ptrs = (input_ptrs[0], output_ptrs[0], output_ptrs[1])

    def enqueue(self, stream_handle: int) -> None:
        if self._rows == 0:
            return
        x, idx, best = self._ptrs
        rows, classes = _u64(self._rows), _u64(self._classes)
        args = (_u64(x), _u64(idx), _u64(best), rows, classes)
        _launch(self._func, self._rows, stream_handle, *args)


_NORMALIZE_SRC = rb"""
extern "C" __global__ void nhwc_u8_normalize(const unsigned char* x, float* y,
                                             unsigned long long n, unsigned long long hw) {
    // y[n, c, h, w] = (x[n, h, w, c] / 255 - 0.5) / 0.5, over n*hw pixels, 3 channels
    unsigned long long p = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (p >= n * hw) return;
    unsigned long long b = p / hw, s = p % hw;
    for (int c = 0; c < 3; ++c)
        y[(b * 3 + c) * hw + s] = (x[p * 3 + c] / 255.0f - 0.5f) / 0.5f;
}
"""


class NhwcNormalizeEnqueuer:
    """Det's engine-side preprocessing: uint8 NHWC image -> float32 NCHW, (x/255 - 0.5)/0.5.

    The input crosses PCIe as uint8, a quarter of the float32 bytes.
    """

    def __init__(self, device_id: int = 0) -> None:
        self._module, self._func = _compile(_NORMALIZE_SRC, b"nhwc_u8_normalize", device_id)
        self._n = self._hw = 0
        self._ptrs = (0, 0)

    def set_input_shapes(self, shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        ((n, h, w, c),) = shapes
        if c != 3:
            raise ValueError(f"expected 3 channels (NHWC), got shape {(n, h, w, c)}")
        self._n, self._hw = n, h * w
        return [(n, 3, h, w)]

    def bind(self, input_ptrs: Sequence[int], output_ptrs: Sequence[int]) -> None:
        self._ptrs = (input_ptrs[0], output_ptrs[0])

    def enqueue(self, stream_handle: int) -> None:
        if self._n * self._hw == 0:
            return
        x, y = self._ptrs
        _launch(
            self._func, self._n * self._hw, stream_handle, _u64(x), _u64(y), _u64(self._n),
            _u64(self._hw),
        )  # fmt: skip


class StandInEnqueuer:
    """Benchmark stand-in for an engine (NOT TensorRT): fixed output shapes, a memset per output.

    ``out_shapes(in_shapes)`` gives the engine's output shapes; the device work is one
    ``cudaMemsetAsync`` per output, so a call costs the executor's copies and overhead only.
    """

    def __init__(self, out_shapes, out_dtypes: Sequence[np.dtype | type]) -> None:
        self._fn = out_shapes
        self._out_dtypes = [np.dtype(d) for d in out_dtypes]
        self._nbytes: list[int] = []
        self._out: list[int] = []

    def set_input_shapes(self, shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        outs = [tuple(s) for s in self._fn([tuple(s) for s in shapes])]
        self._nbytes = [
            int(np.prod(s, dtype=np.int64)) * d.itemsize
            for s, d in zip(outs, self._out_dtypes, strict=True)
        ]
        return outs

    def bind(self, input_ptrs: Sequence[int], output_ptrs: Sequence[int]) -> None:
        self._out = list(output_ptrs)

    def enqueue(self, stream_handle: int) -> None:
        rt = cudart()
        for ptr, n in zip(self._out, self._nbytes, strict=True):
            if n:
                check(rt.cudaMemsetAsync(ptr, 1, n, stream_handle), "cudaMemsetAsync")


def identity_det_executor(dtype=np.float32, **kw):
    """A CudaExecutor whose "engine" copies (bitmap, map) inputs to outputs (not TensorRT),
    with the map as a resident output: the det engine's I/O for resident-map tests."""
    from paddleocr_trt.backend.cuda import CudaExecutor

    return CudaExecutor(
        DeviceCopyEnqueuer([np.uint8, dtype]),
        input_dtypes=[np.uint8, dtype],
        output_dtypes=[np.uint8, dtype],
        output_names=["bitmap", "prob"],
        resident_outputs=["prob"],
        **kw,
    )
