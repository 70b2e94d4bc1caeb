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


class AffineKernelEnqueuer:
    """y = a*x + b on float32 (compiled for the device's arch).

    ``repeats`` launches the same kernel that many times per call (same result), standing in
    for an engine made of many small kernels, where CUDA graphs save the most launch overhead.
    """

    def __init__(
        self, device_id: int = 0, a: float = 2.0, b: float = 1.0, *, repeats: int = 1
    ) -> None:
        from cuda.bindings import driver, nvrtc

        self.a, self.b = a, b
        self.repeats = repeats
        info = device_info(device_id)
        created = nvrtc.nvrtcCreateProgram(_AFFINE_SRC, b"affine.cu", 0, [], [])
        prog = _nvrtc_check(created, "nvrtcCreateProgram")
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
            self._module = _drv_check(driver.cuModuleLoadData(cubin), "cuModuleLoadData")
            self._func = _drv_check(driver.cuModuleGetFunction(self._module, b"affine"), "func")
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
