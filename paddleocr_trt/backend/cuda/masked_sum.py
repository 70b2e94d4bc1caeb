"""DB box scores summed where the det map lives: one float64 back per box instead of its window.

Why: a box's score is ``cv2.mean(map[window], mask)``; copying each window (~84 KB for a
30x700 text line) to the host costs far more than the 8-byte sum. The host packs the masks
(``pack_masked_windows``: 1 bit a pixel), uploads them, and a kernel returns each window's sum.

Exactness: the sum must equal :func:`~paddleocr_trt.postprocess.resident.masked_sum_of` bit for
bit, i.e. a float64 sum from +0.0 of the masked values in row-major order, one at a time. One
block per window; warps 1.. convert the next chunk of the window to double in shared memory
(0.0 where the mask is clear: adding +0.0 to a sum that started at +0.0 never changes it, so
NaN/inf outside the mask never reach it) while one thread adds the current chunk in order.
float->double is exact, ``--fmad=false`` keeps the compiler from fusing anything.

The kernel is compiled with NVRTC once per process and architecture and loaded once per device.
NVRTC ships with the ``nvidia-cuda-nvrtc`` wheels, not with the driver: without it (or when
compiling or loading fails) the map falls back to :func:`host_masked_sums`, the same numbers
from copied windows, and says so once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...log import get_logger, warn_once
from ...postprocess.resident import (
    SUM_BYTES,
    MaskedWindow,
    check_masked_window,
    masked_sum_of,
    pack_masked_windows,
)
from .memory import DeviceBuffer, PinnedBuffer
from .runtime import CudaError, check, cudart, device_info, device_scope

if TYPE_CHECKING:
    from .stream import Stream

logger = get_logger("cuda.masked_sum")

THREADS = 256
CHUNK = 2048  # doubles per shared buffer; two buffers = 32 KiB of static shared memory
META_COLS = 7  # b, c, y0, x0, h, w, byte offset (pack_masked_windows)

KERNEL_NAME = b"masked_sums_f32"
KERNEL_SRC = rb"""
#define THREADS %(threads)d
#define CHUNK %(chunk)d

// dst[j] = the window's pixel start + j as double, or 0.0 where its mask bit is clear
__device__ __forceinline__ void load_chunk(
        const float* plane, long long map_w, const unsigned char* mask, long long w,
        long long n, long long start, double* dst, int t, int nt) {
    long long left = n - start;
    int len = left < CHUNK ? (int)left : CHUNK;
    for (int j = t; j < len; j += nt) {
        long long p = start + j;
        long long row = p / w;
        long long col = p - row * w;
        bool on = (mask[p >> 3] >> (7 - (int)(p & 7))) & 1;
        dst[j] = on ? (double)plane[row * map_w + col] : 0.0;
    }
}

extern "C" __global__ void __launch_bounds__(THREADS) masked_sums_f32(
        const float* __restrict__ map, long long channels, long long map_h, long long map_w,
        const long long* __restrict__ meta, const unsigned char* __restrict__ bits,
        double* __restrict__ out) {
    __shared__ double buf[2][CHUNK];
    const long long* m = meta + 7LL * blockIdx.x;
    const long long b = m[0], c = m[1], y0 = m[2], x0 = m[3], h = m[4], w = m[5];
    const float* plane = map + ((b * channels + c) * map_h + y0) * map_w + x0;
    const unsigned char* mask = bits + m[6];
    const long long n = h * w;
    const long long chunks = (n + CHUNK - 1) / CHUNK;
    load_chunk(plane, map_w, mask, w, n, 0, buf[0], threadIdx.x, THREADS);
    __syncthreads();
    double sum = 0.0;
    for (long long i = 0; i < chunks; ++i) {
        if (threadIdx.x == 0) {  // the only thread that adds: in order, one at a time
            const double* src = buf[i & 1];
            long long left = n - i * CHUNK;
            int len = left < CHUNK ? (int)left : CHUNK;
            #pragma unroll 8
            for (int j = 0; j < len; ++j) sum += src[j];  // loads run ahead, adds in order
        } else if (threadIdx.x >= 32 && i + 1 < chunks) {  // warps 1..: the next chunk
            load_chunk(plane, map_w, mask, w, n, (i + 1) * CHUNK, buf[(i + 1) & 1],
                       threadIdx.x - 32, THREADS - 32);
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = sum;
}
""" % {b"threads": THREADS, b"chunk": CHUNK}


class KernelUnavailable(RuntimeError):
    """NVRTC or the driver API cannot give us the kernel here (the host path is used)."""


def _nvrtc() -> Any:
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        try:
            from cuda import nvrtc  # older cuda-python layout
        except ImportError as exc:
            raise KernelUnavailable(f"cuda-python's NVRTC bindings are missing ({exc})") from exc
    return nvrtc


def _driver() -> Any:
    try:
        from cuda.bindings import driver
    except ImportError:
        from cuda import cuda as driver  # older cuda-python layout
    return driver


def _nvrtc_call(nvrtc: Any, result: tuple, what: str) -> Any:
    if result[0] != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise KernelUnavailable(f"{what}: {result[0]}")
    return result[1] if len(result) > 1 else None


def compile_cubin(arch: str) -> bytes:
    """NVRTC-compile the kernel for ``arch`` (``sm_90``); needs NVRTC, not a GPU."""
    nvrtc = _nvrtc()
    try:
        prog = _nvrtc_call(
            nvrtc, nvrtc.nvrtcCreateProgram(KERNEL_SRC, b"masked_sums.cu", 0, [], []), "create"
        )
    except Exception as exc:  # the bindings load libnvrtc on first use
        reason = " ".join(str(exc).split())  # one line
        raise KernelUnavailable(f"NVRTC could not be loaded ({reason})") from exc
    try:
        opts = [f"--gpu-architecture={arch}".encode(), b"--fmad=false"]
        err = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)[0]
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            size = _nvrtc_call(nvrtc, nvrtc.nvrtcGetProgramLogSize(prog), "log size")
            log = b" " * size
            nvrtc.nvrtcGetProgramLog(prog, log)
            raise KernelUnavailable(f"NVRTC compile for {arch} failed: {log.decode()!s:.300}")
        size = _nvrtc_call(nvrtc, nvrtc.nvrtcGetCUBINSize(prog), "cubin size")
        cubin = b" " * size
        _nvrtc_call(nvrtc, nvrtc.nvrtcGetCUBIN(prog, cubin), "cubin")
        return cubin
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


@dataclass(frozen=True)
class MaskedSumKernel:
    """The loaded kernel of one device (the module is kept so the function stays valid)."""

    device_id: int
    module: Any
    function: Any

    def launch(self, stream: Stream, count: int, shape: tuple[int, ...], ptrs: tuple) -> None:
        """``count`` blocks, one per window; ``ptrs`` = (map, meta, bits, out) device
        addresses; ``out`` gets the sums. Asynchronous on ``stream``."""
        driver = _driver()
        map_ptr, meta, bits, out = ptrs
        _, channels, h, w = shape
        args = [np.array([map_ptr], np.uint64)]
        args += [np.array([v], np.int64) for v in (channels, h, w)]
        args += [np.array([v], np.uint64) for v in (meta, bits, out)]
        params = np.array([a.ctypes.data for a in args], np.uint64)
        err = driver.cuLaunchKernel(
            self.function, count, 1, 1, THREADS, 1, 1, 0, driver.CUstream(stream.handle),
            params.ctypes.data, 0,
        )  # fmt: skip
        if err[0] != driver.CUresult.CUDA_SUCCESS:
            raise CudaError(f"cuLaunchKernel (masked sums) failed: {err[0]}")


_lock = threading.Lock()
_cubins: dict[str, bytes] = {}
_kernels: dict[int, MaskedSumKernel | None] = {}


def _load(device_id: int) -> MaskedSumKernel:
    _nvrtc()  # fail fast, before touching the device, when NVRTC is not there at all
    arch = device_info(device_id).arch
    if arch not in _cubins:
        _cubins[arch] = compile_cubin(arch)
    driver = _driver()
    with device_scope(device_id):
        check(cudart().cudaFree(0), "cudaFree(0)")  # the runtime's primary context, current
        module = driver.cuModuleLoadData(_cubins[arch])
        if module[0] != driver.CUresult.CUDA_SUCCESS:
            raise KernelUnavailable(f"cuModuleLoadData for {arch}: {module[0]}")
        func = driver.cuModuleGetFunction(module[1], KERNEL_NAME)
        if func[0] != driver.CUresult.CUDA_SUCCESS:
            raise KernelUnavailable(f"cuModuleGetFunction: {func[0]}")
    return MaskedSumKernel(device_id, module[1], func[1])


def kernel_for(device_id: int) -> MaskedSumKernel | None:
    """The device's kernel, compiled on first use; None (said once) when it cannot be had."""
    with _lock:
        if device_id in _kernels:
            return _kernels[device_id]
        try:
            kernel: MaskedSumKernel | None = _load(device_id)
        except KernelUnavailable as exc:
            kernel = None
            warn_once(
                ("masked-sums-host", str(device_id)),
                "box scores on device %d are summed on the host: %s; each box's window is "
                "copied (4 bytes a pixel) instead of one 8-byte sum (same results)",
                device_id,
                exc,
            )
        _kernels[device_id] = kernel
        return kernel


class MaskedSumStaging:
    """One pool's buffers for masked sums: pinned upload/download, device meta+bits and sums.
    Used under the pool's lock (one batch at a time), freed when the pool closes."""

    def __init__(self, device_id: int) -> None:
        self.device_id = device_id
        self.upload = PinnedBuffer()
        self.download = PinnedBuffer()
        self.dev_in = DeviceBuffer(device_id)
        self.dev_out = DeviceBuffer(device_id)

    def sums(
        self,
        kernel: MaskedSumKernel,
        stream: Stream,
        shape: tuple[int, ...],
        map_ptr: int,
        windows: Sequence[MaskedWindow],
    ) -> np.ndarray:
        """Upload the packed masks, launch, copy the sums back, one sync: (K,) float64."""
        meta, bits = pack_masked_windows(windows)
        count, head = len(meta), meta.nbytes  # meta first: its int64s stay 8-byte aligned
        total = head + bits.nbytes
        with device_scope(self.device_id):
            for buf, nbytes in ((self.upload, total), (self.dev_in, total)):
                buf.ensure(nbytes)
            for buf in (self.download, self.dev_out):
                buf.ensure(count * 8)
            staged = self.upload.view((total,), np.uint8)
            staged[:head] = meta.reshape(-1).view(np.uint8)
            staged[head:] = bits
            stream.copy_h2d(self.dev_in.ptr, self.upload.ptr, total)
            ptrs = (map_ptr, self.dev_in.ptr, self.dev_in.ptr + head, self.dev_out.ptr)
            kernel.launch(stream, count, shape, ptrs)
            stream.copy_d2h(self.download.ptr, self.dev_out.ptr, count * 8)
            stream.synchronize()
        return self.download.view((count,), np.float64).copy()

    def close(self) -> None:
        for buf in (self.upload, self.download, self.dev_in, self.dev_out):
            buf.free()


def device_masked_sums(resident: Any, windows: Sequence[MaskedWindow]) -> np.ndarray:
    """``DeviceResidentMap.masked_sums``: every window checked first, then one upload, one
    launch and one 8-byte sum back per window, under the pool's lock (``close`` frees the
    buffers); the host path when there is no kernel for this device or the map is not
    float32 (the kernel reads float32 only). ``resident`` is a ``resident.DeviceResidentMap``
    (typed loosely: ``resident.py`` imports this module, never the other way)."""
    for win in windows:
        check_masked_window(resident.shape, win)
    kernel = None
    if windows and resident.dtype == np.float32:
        kernel = kernel_for(resident.device_id)
    if windows and kernel is None:
        return host_masked_sums(resident, windows)
    pool = resident._lease.pool  # resident.ResidentPool
    with pool.lock:
        resident._check_live()
        if not windows:
            return np.zeros(0, np.float64)
        staging = pool.extras.get("masked_sums")
        if staging is None:
            staging = pool.extras["masked_sums"] = MaskedSumStaging(pool.device_id)
        ptr = resident._lease.buf.ptr
        out = staging.sums(kernel, pool.stream(), resident.shape, ptr, windows)
    resident._count(SUM_BYTES * len(windows))
    return out


def host_masked_sums(resident: Any, windows: Sequence[MaskedWindow]) -> np.ndarray:
    """The exact fallback: each window copied (one ``windows()`` batch, counted as fetched),
    then summed on the host by the reference."""
    boxes = []
    for win in windows:
        check_masked_window(resident.shape, win)
        h, w = win.mask.shape
        boxes.append((win.b, win.c, win.y0, win.y0 + h, win.x0, win.x0 + w))
    arrays = resident.windows(boxes)
    out = np.zeros(len(windows), np.float64)
    for k, (win, array) in enumerate(zip(windows, arrays, strict=True)):
        out[k] = masked_sum_of(array, MaskedWindow(0, 0, 0, 0, win.mask))
    return out
