"""Copy time per det/rec call: staged (before) vs zero-copy pinned views (after), real GPU.

Run on a CUDA machine:  python benchmarks/bench_cuda_io.py [--resident | --producer] [out.json]
(``--producer``: the producer + TensorRTRunner path before/after input leases, see
bench_producer_views.py)

The engine is a STAND-IN, not TensorRT (none on the measuring machine): it declares the real
det/rec output shapes and does one cudaMemsetAsync per output, so a call's time is the
executor's copies (H2D input, D2H outputs), its host staging and its per-call overhead.

Methods, per shape:
  pageable   plain synchronous cudaMemcpy from/to numpy arrays (no executor, no pinned memory)
  staged     CudaExecutor.run(numpy array): host copy into pinned memory, async H2D, enqueue,
             async D2H, sync, host copy out (what the executor did before zero-copy)
  zero_copy  the producer filled executor.input_view(...) once; run(view, copy_outputs=False):
             no host copy either way
The producer's own write (preprocessing) is excluded from all three: it happens once per image
whichever way the data then travels.

Resident det map (``--resident`` runs only this part): 1x1x1408x992 and 1x1x3008x4000 float32 maps
(the stand-in engine writes it; its input is 192 bytes, so only the output counts), read
  whole      run(copy_outputs=False): the whole map D2H into pinned memory (zero-copy view)
  staged     run(): the whole map D2H + host copy into a fresh array
  windows    the map stays on the device (resident_outputs); 30 windows of 30x700 px are
             copied (one cudaMemcpy2D each, pageable destination), then release()
  windows()  the same 30 boxes in one DeviceResidentMap.windows() batch (async copies into
             pinned staging, one sync, a host copy each)
plus the fetch alone on an already-returned resident map: to_numpy() vs the 30 windows, and
(raw cuda-python, no package API) the 30 windows as async copies into pinned memory, one sync.
Then the box scores themselves (benchmarks/bench_masked_sums.py): masked_sums() on the device
vs windows() + host sums vs the whole map + host sums, 30 boxes on 1408x992, 100 on 3008x4000.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(_ROOT), str(_ROOT / "tests" / "gpu")]  # runs from a checkout, uninstalled

from timing import time_calls  # noqa: E402

from paddleocr_trt.backend.cuda import CudaExecutor  # noqa: E402
from paddleocr_trt.backend.cuda.memory import DeviceBuffer  # noqa: E402
from paddleocr_trt.backend.cuda.runtime import check, cudart  # noqa: E402

Shape = tuple[int, ...]
NUM_CLASSES = 6625  # PP-OCR rec dictionary + blank
DET_OUT = (1, 1, 1408, 1024)


def _cases() -> list[dict]:
    cases = [
        {"name": "det f32 NCHW 1x3x1408x1024", "model": "det", "in": ((1, 3, 1408, 1024),
         np.float32), "outs": [(DET_OUT, np.float32)]},
        {"name": "det u8 NHWC 1x1024x1408x3", "model": "det", "in": ((1, 1024, 1408, 3),
         np.uint8), "outs": [(DET_OUT, np.float32)]},
        {"name": "det u8 NHWC page 1x3008x4000x3", "model": "det", "in": ((1, 3008, 4000, 3),
         np.uint8), "outs": [((1, 1, 1408, 1056), np.float32)]},
    ]  # fmt: skip
    for w in (320, 640, 960, 1280, 1600):
        t = w // 8
        rec_in = ((6, 3, 48, w), np.float32)
        cases.append({"name": f"rec stock 6x3x48x{w} -> 6x{t}x{NUM_CLASSES} f32", "model": "rec",
                      "in": rec_in, "outs": [((6, t, NUM_CLASSES), np.float32)]})  # fmt: skip
        argmax_outs = [((6, t), np.int32), ((6, t), np.float32)]
        cases.append({"name": f"rec argmax 6x3x48x{w} -> 6x{t} i32+f32", "model": "rec",
                      "in": rec_in, "outs": argmax_outs})  # fmt: skip
    return cases


def _pageable(shape: Shape, dtype, outs, data: np.ndarray) -> Callable[[], None]:
    rt = cudart()
    h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
    dev_in = DeviceBuffer(0)
    dev_in.ensure(data.nbytes)
    host_outs = [np.empty(s, d) for s, d in outs]
    dev_outs = []
    for h in host_outs:
        b = DeviceBuffer(0)
        b.ensure(h.nbytes)
        dev_outs.append(b)

    def run() -> None:
        check(rt.cudaMemcpy(dev_in.ptr, data.ctypes.data, data.nbytes, h2d), "cudaMemcpy H2D")
        for b, h in zip(dev_outs, host_outs, strict=True):
            check(rt.cudaMemset(b.ptr, 1, h.nbytes), "cudaMemset")
            check(rt.cudaMemcpy(h.ctypes.data, b.ptr, h.nbytes, d2h), "cudaMemcpy D2H")

    run.keep = (dev_in, dev_outs)  # type: ignore[attr-defined]
    return run


def measure(reps: int = 50) -> list[dict]:
    from cuda_test_kernels import StandInEnqueuer

    rng = np.random.default_rng(0)
    rows = []
    for case in _cases():
        shape, dtype = case["in"]
        outs = case["outs"]
        if np.dtype(dtype) == np.uint8:
            data = rng.integers(0, 256, size=shape, dtype=np.uint8)
        else:
            data = rng.standard_normal(shape).astype(dtype)
        out_bytes = sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d in outs)
        enq = StandInEnqueuer(lambda _shapes, o=outs: [s for s, _ in o], [d for _, d in outs])
        with CudaExecutor(enq, input_dtypes=[dtype], output_dtypes=[d for _, d in outs]) as ex:
            view = ex.input_view(0, shape)
            view[...] = data
            methods = {
                "pageable": _pageable(shape, dtype, outs, data),
                "staged": lambda ex=ex, data=data: ex.run([data]),
                "zero_copy": lambda ex=ex, view=view: ex.run([view], copy_outputs=False),
            }
            for method, fn in methods.items():
                times = time_calls(fn, reps, warmup=3)
                med = statistics.median(times)
                rows.append({
                    "case": case["name"], "model": case["model"], "method": method,
                    "in_bytes": int(data.nbytes), "out_bytes": out_bytes,
                    "median_ms": med * 1e3, "min_ms": min(times) * 1e3,
                    "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))] * 1e3,
                    "GBps": (data.nbytes + out_bytes) / med / 1e9, "reps": reps,
                })  # fmt: skip
            assert ex.stats.zero_copy_inputs == reps + 3 and ex.stats.staged_inputs == reps + 3
    return rows


DET_MAPS = [(1, 1, 1408, 992), (1, 1, 3008, 4000)]  # a 960-limit page; a full-size scan
N_WINDOWS, WIN_H, WIN_W = 30, 30, 700


def _det_windows(shape: Shape, seed: int = 0) -> list[tuple[int, int, int, int]]:
    """30 text-line boxes (30x700 px) at random places on the map: (y0, y1, x0, x1)."""
    rng = np.random.default_rng(seed)
    _, _, h, w = shape
    out = []
    for _ in range(N_WINDOWS):
        y0, x0 = int(rng.integers(0, h - WIN_H)), int(rng.integers(0, w - WIN_W))
        out.append((y0, y0 + WIN_H, x0, x0 + WIN_W))
    return out


def _batched_windows(m, boxes) -> Callable[[], None]:
    """NOT an API of the package: every window as one cudaMemcpy2DAsync into one pinned buffer,
    one stream sync; what a batched window read could cost (the windows stay in pinned memory)."""
    from paddleocr_trt.backend.cuda.memory import PinnedBuffer
    from paddleocr_trt.backend.cuda.stream import Stream

    rt = cudart()
    kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
    stream = Stream(0)
    staging = PinnedBuffer()
    staging.ensure(len(boxes) * WIN_H * WIN_W * 4)
    pitch = m.shape[3] * 4

    def run() -> None:
        dst = staging.ptr
        for y0, y1, x0, x1 in boxes:
            width = (x1 - x0) * 4
            src = m.device_ptr + (y0 * m.shape[3] + x0) * 4
            err = rt.cudaMemcpy2DAsync(dst, width, src, pitch, width, y1 - y0, kind, stream.raw)
            check(err, "cudaMemcpy2DAsync")
            dst += width * (y1 - y0)
        stream.synchronize()

    run.keep = (stream, staging)  # type: ignore[attr-defined]
    return run


def measure_resident(reps: int = 100) -> list[dict]:
    rows = []
    for shape in DET_MAPS:
        rows += _measure_resident(shape, reps)
    return rows


def _measure_resident(shape: Shape, reps: int) -> list[dict]:
    from cuda_test_kernels import StandInEnqueuer

    boxes = _det_windows(shape)
    tiny = np.zeros((1, 3, 4, 4), np.float32)
    map_bytes = int(np.prod(shape)) * 4
    win_bytes = N_WINDOWS * WIN_H * WIN_W * 4

    def enq():
        return StandInEnqueuer(lambda _shapes: [shape], [np.float32])

    kw = {"input_dtypes": [np.float32], "output_dtypes": [np.float32]}
    rows = []
    with (
        CudaExecutor(enq(), **kw) as plain,
        CudaExecutor(enq(), output_names=["prob"], resident_outputs=["prob"], **kw) as res,
    ):
        view = plain.input_view(0, tiny.shape)

        def windows(m) -> None:
            for y0, y1, x0, x1 in boxes:
                m.window(0, 0, y0, y1, x0, x1)

        def resident_call() -> None:
            (m,) = res.run([tiny])
            windows(m)
            m.release()

        def resident_batch_call() -> None:
            (m,) = res.run([tiny])
            m.windows(batch)
            m.release()

        batch = [(0, 0, *box) for box in boxes]

        (kept,) = res.run([tiny])
        methods = {
            "call: whole map D2H (zero-copy view)": (
                lambda: plain.run([view], copy_outputs=False), map_bytes),
            "call: whole map D2H + host copy (staged)": (lambda: plain.run([tiny]), map_bytes),
            "call: resident + 30 windows + release": (resident_call, win_bytes),
            "call: resident + windows() (one batch) + release": (resident_batch_call, win_bytes),
            "call: resident, no read (floor)": (lambda: res.run([tiny])[0].release(), 0),
            "fetch only: to_numpy() of a resident map": (kept.to_numpy, map_bytes),
            "fetch only: 30 windows of a resident map": (lambda: windows(kept), win_bytes),
            "fetch only: windows() of the 30 boxes (one batch)": (
                lambda: kept.windows(batch), win_bytes),
            "fetch only: 30 windows async->pinned, 1 sync (raw)": (
                _batched_windows(kept, boxes), win_bytes),
        }  # fmt: skip
        for method, (fn, nbytes) in methods.items():
            times = time_calls(fn, reps, warmup=5)
            rows.append({
                "case": f"det map {'x'.join(map(str, shape))} f32", "method": method,
                "bytes_to_host": nbytes,
                "median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3,
                "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))] * 1e3, "reps": reps,
            })  # fmt: skip
        kept.release()
        assert res.resident_pool("prob").created <= 2  # released maps were reused
    return rows


def resident_table(rows: list[dict]) -> str:
    lines = [
        f"resident det map f32, {N_WINDOWS} windows of {WIN_H}x{WIN_W} px "
        "(stand-in engine, not TensorRT)",
        f"{'case':<26} {'method':<52} {'to host MB':>10} {'median ms':>10} {'min ms':>8}"
        f" {'p90 ms':>8}",
    ]
    for r in rows:
        lines.append(
            f"{r['case']:<26} {r['method']:<52} {r['bytes_to_host'] / 1e6:10.2f}"
            f" {r['median_ms']:10.3f} {r['min_ms']:8.3f} {r['p90_ms']:8.3f}"
        )
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    by_case: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_case.setdefault(r["case"], {})[r["method"]] = r
    lines = [
        "case (stand-in engine: memset outputs; not TensorRT)      in MB  out MB"
        "  pageable ms  staged ms  zero-copy ms  staged/zero"
    ]
    for case, m in by_case.items():
        p, s, z = m["pageable"], m["staged"], m["zero_copy"]
        lines.append(
            f"{case:<56} {p['in_bytes'] / 1e6:6.1f} {p['out_bytes'] / 1e6:7.2f}"
            f"  {p['median_ms']:11.3f} {s['median_ms']:10.3f} {z['median_ms']:13.3f}"
            f"  {s['median_ms'] / z['median_ms']:11.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if "--producer" in argv[1:]:
        return producer_main([a for a in argv[1:] if a != "--producer"])
    args = [a for a in argv[1:] if a != "--resident"]
    only_resident = "--resident" in argv[1:]
    rows = [] if only_resident else measure()
    res_rows = measure_resident()
    from bench_masked_sums import masked_table, measure_masked

    masked_rows = measure_masked()
    if args:
        doc = {"io": rows, "resident": res_rows, "masked": masked_rows}
        Path(args[0]).write_text(json.dumps(doc, indent=1))
    if rows:
        sys.stdout.write(table(rows) + "\n\n")
    sys.stdout.write(resident_table(res_rows) + "\n\n" + masked_table(masked_rows) + "\n")
    return 0


def producer_main(args: list[str]) -> int:
    """``--producer``: the producer -> runner -> executor path, before and after input leases
    (``bench_producer_views.py``)."""
    from bench_producer_views import measure_producer, producer_table

    rows = measure_producer()
    if args:
        Path(args[0]).write_text(json.dumps({"producer": rows}, indent=1))
    sys.stdout.write(producer_table(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
