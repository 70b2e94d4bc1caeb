"""DB box scores from a resident det map: masked sums on the device vs windows vs the whole map.

Run on a CUDA machine:  python benchmarks/bench_masked_sums.py [out.json]
(``bench_cuda_io.py --resident`` runs it too.)

The engine is a STAND-IN, not TensorRT: it memsets a float32 map of the det output's shape.
Boxes are text lines of 30x700 px, their masks slanted parallelograms (PaddleX draws a box's
polygon with cv2.fillPoly into the box's bounding window). Per map:
  masked_sums()   DeviceResidentMap.masked_sums: masks packed and uploaded, one kernel, the
                  K float64 sums back (the sums are exactly cv2.mean's)
  host path       masked_sum.host_masked_sums: one windows() batch, then the reference sum on
                  the host (what a machine without NVRTC does)
  windows()       the batch of window copies alone (no sums)
  whole map       to_numpy() of the map, then host sums (cv2.mean when installed, as PaddleX)
  host sums only  the host's share alone: the K sums over host arrays
"call" rows add the engine call and release() around the read; "fetch" rows read a map that
was already returned. Bytes: D2H what comes back, H2D what the read uploads.
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
from paddleocr_trt.backend.cuda import masked_sum as ms  # noqa: E402
from paddleocr_trt.postprocess.resident import (  # noqa: E402
    SUM_BYTES,
    MaskedWindow,
    masked_mean,
    masked_sum_of,
    pack_masked_windows,
)

try:
    import cv2
except ImportError:
    cv2 = None

#: (map shape, boxes): a 960-limit page with 30 lines; a full-size 3008x4000 scan with 100
CASES = [((1, 1, 1408, 992), 30), ((1, 1, 3008, 4000), 100)]
BOX_H, BOX_W = 30, 700


def boxes_for(shape: tuple[int, ...], count: int, seed: int = 0) -> list[MaskedWindow]:
    """``count`` 30x700 windows at random places, each mask a parallelogram slanted by up to
    4 px over the box's width (a slightly rotated text line), as a fillPoly of its quad."""
    rng = np.random.default_rng(seed)
    _, _, h, w = shape
    yy, xx = np.mgrid[0:BOX_H, 0:BOX_W]
    out = []
    for _ in range(count):
        slant = rng.uniform(-4, 4) / BOX_W
        centre = BOX_H / 2 + slant * (xx - BOX_W / 2)
        mask = (np.abs(yy - centre) <= BOX_H / 2 - 3).astype(np.uint8)
        y0, x0 = int(rng.integers(0, h - BOX_H)), int(rng.integers(0, w - BOX_W))
        out.append(MaskedWindow(0, 0, y0, x0, mask))
    return out


def host_sums(plane: np.ndarray, windows: list[MaskedWindow]) -> list[float]:
    """The host's box scores (means) over a host plane: cv2.mean as PaddleX, or the reference
    sum and mean when cv2 is not installed."""
    if cv2 is None:
        return [masked_mean(masked_sum_of(plane, w), w.count) for w in windows]
    out = []
    for w in windows:
        h, wd = w.mask.shape
        out.append(cv2.mean(plane[w.y0 : w.y0 + h, w.x0 : w.x0 + wd], w.mask)[0])
    return out


def measure_masked(reps: int = 50) -> list[dict]:
    rows = []
    for shape, count in CASES:
        rows += _measure_case(shape, count, reps)
    return rows


def _measure_case(shape: tuple[int, ...], count: int, reps: int) -> list[dict]:
    from cuda_test_kernels import StandInEnqueuer

    tiny = np.zeros((1, 3, 4, 4), np.float32)
    kw = {"input_dtypes": [np.float32], "output_dtypes": [np.float32]}
    windows = boxes_for(shape, count)
    boxes = [(w.b, w.c, w.y0, w.y0 + BOX_H, w.x0, w.x0 + BOX_W) for w in windows]
    meta, bits = pack_masked_windows(windows)
    up, map_bytes = meta.nbytes + bits.nbytes, int(np.prod(shape)) * 4
    win_bytes, sums_bytes = count * BOX_H * BOX_W * 4, SUM_BYTES * count

    def enq():
        return StandInEnqueuer(lambda _shapes: [shape], [np.float32])

    rows = []
    with (
        CudaExecutor(enq(), **kw) as plain,
        CudaExecutor(enq(), output_names=["prob"], resident_outputs=["prob"], **kw) as res,
    ):
        assert ms.kernel_for(0) is not None, "no NVRTC kernel: nothing to measure"
        view = plain.input_view(0, tiny.shape)
        (kept,) = res.run([tiny])
        plane = kept.to_numpy()[0, 0]
        exact = [masked_sum_of(plane, w) for w in windows]
        assert list(kept.masked_sums(windows)) == exact  # what is timed is right

        def call(read: Callable) -> Callable[[], None]:
            def run() -> None:
                (m,) = res.run([tiny])
                read(m)
                m.release()

            return run

        def whole_call() -> None:
            (out,) = plain.run([view], copy_outputs=False)
            host_sums(out[0, 0], windows)

        def host_path(m) -> object:
            return ms.host_masked_sums(m, windows)

        methods = {
            "call: resident + masked_sums() + release": (
                call(lambda m: m.masked_sums(windows)), sums_bytes, up),
            "call: resident + host path (windows() + sums)": (call(host_path), win_bytes, 0),
            "call: whole map into pinned + host sums": (whole_call, map_bytes, 0),
            "fetch: masked_sums()": (lambda: kept.masked_sums(windows), sums_bytes, up),
            "fetch: host path (windows() + sums)": (lambda: host_path(kept), win_bytes, 0),
            "fetch: windows() only": (lambda: kept.windows(boxes), win_bytes, 0),
            "fetch: to_numpy() + host sums": (
                lambda: host_sums(kept.to_numpy()[0, 0], windows), map_bytes, 0),
            "host sums only (no copy)": (lambda: host_sums(plane, windows), 0, 0),
        }  # fmt: skip
        methods["pack_masked_windows() alone (host)"] = (lambda: pack_masked_windows(windows), 0, 0)
        for method, (fn, d2h, h2d) in methods.items():
            times = time_calls(fn, reps, warmup=5)
            rows.append({
                "case": f"{'x'.join(map(str, shape))}, {count} boxes", "method": method,
                "d2h_bytes": d2h, "h2d_bytes": h2d, "median_ms": statistics.median(times) * 1e3,
                "min_ms": min(times) * 1e3, "reps": reps,
                "host_sums": "cv2.mean" if cv2 is not None else "masked_sum_of",
            })  # fmt: skip
        kernel_ms = _kernel_ms(kept, windows, meta.nbytes)
        rows.append({
            "case": rows[-1]["case"], "method": "kernel alone (cudaEvent, mean of 20 launches)",
            "d2h_bytes": 0, "h2d_bytes": 0, "median_ms": kernel_ms, "min_ms": kernel_ms,
            "reps": 20, "host_sums": rows[-1]["host_sums"],
        })  # fmt: skip
        kept.release()
    return rows


def _kernel_ms(kept, windows: list[MaskedWindow], meta_bytes: int, launches: int = 20) -> float:
    """The kernel alone on the pool's stream, over the masks the last masked_sums() uploaded
    (so the device buffers hold exactly these windows)."""
    from paddleocr_trt.backend.cuda.runtime import check, cudart, device_scope

    rt = cudart()
    kept.masked_sums(windows)
    pool = kept._lease.pool
    staging, stream, kernel = pool.extras["masked_sums"], pool.stream(), ms.kernel_for(0)
    dev_in = staging.dev_in.ptr
    ptrs = (kept.device_ptr, dev_in, dev_in + meta_bytes, staging.dev_out.ptr)
    with device_scope(0):
        start, end = check(rt.cudaEventCreate(), "event"), check(rt.cudaEventCreate(), "event")
        kernel.launch(stream, len(windows), kept.shape, ptrs)  # warm
        check(rt.cudaEventRecord(start, stream.raw), "record")
        for _ in range(launches):
            kernel.launch(stream, len(windows), kept.shape, ptrs)
        check(rt.cudaEventRecord(end, stream.raw), "record")
        stream.synchronize()
        elapsed = check(rt.cudaEventElapsedTime(start, end), "elapsed")
        for event in (start, end):
            check(rt.cudaEventDestroy(event), "destroy")
    return float(elapsed) / launches


def masked_table(rows: list[dict]) -> str:
    sums = rows[0]["host_sums"] if rows else "-"
    lines = [
        f"masked box sums, {BOX_H}x{BOX_W} px boxes (stand-in engine, not TensorRT; "
        f"host sums by {sums})",
        f"{'case':<24} {'method':<48} {'D2H KB':>9} {'H2D KB':>8} {'median ms':>10} {'min ms':>8}",
    ]
    for r in rows:
        lines.append(
            f"{r['case']:<24} {r['method']:<48} {r['d2h_bytes'] / 1e3:9.1f}"
            f" {r['h2d_bytes'] / 1e3:8.1f} {r['median_ms']:10.3f} {r['min_ms']:8.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    rows = measure_masked()
    if len(argv) > 1:
        Path(argv[1]).write_text(json.dumps(rows, indent=1))
    sys.stdout.write(masked_table(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
