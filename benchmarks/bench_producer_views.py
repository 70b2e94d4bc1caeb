"""Producer -> TensorRTRunner -> CudaExecutor per det/rec call, before and after input leases.

Run on a CUDA machine:  python benchmarks/bench_cuda_io.py --producer [out.json]

BEFORE: the producer builds a plain array (det: ``StackUint8WithThresh``'s ``np.stack`` + the
threshold; rec: PaddleX's ``ToBatch``, pad + stack + float32, replicated below since PaddleX is
not on the measuring machine) and ``runner.infer`` hands it to the executor, which copies it
into pinned memory before the H2D. AFTER: the same producer inside ``input_view_scope`` writes
into the leased pinned buffers (``TensorRTRunner.input_views``) and the executor transfers them
in place. The runner is real; the engine is a STAND-IN (``tests/gpu/standin_trt.py``, NOT
TensorRT) whose device work is one memset per output, so the times are the producer's stack,
the copies and the per-call overhead. det's probability map is resident (not copied back), its
packed bitmap is; rec returns (index, max prob).

Per call (median of ``reps``): producer ms (building the batch), host ms (producer + the
executor's host work, i.e. end-to-end minus the wait for the GPU), end-to-end ms.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

import numpy as np

from paddleocr_trt.fusion.predictors import PadStackFloat32, StackUint8WithThresh
from paddleocr_trt.fusion.views import input_view_scope
from paddleocr_trt.profiles import ShapeProfile


class _Predictor:
    """What the producers read from their PaddleX predictor."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.thresh = 0.3


class _DBPost:
    thresh = 0.3


def paddlex_rec_to_batch(imgs: list[np.ndarray]) -> list[np.ndarray]:
    """PaddleX 3.7.2's rec ``ToBatch`` (text_recognition/processors.py), replicated."""
    max_width = max(img.shape[2] for img in imgs)
    padded = [np.pad(img, ((0, 0), (0, 0), (0, max_width - img.shape[2]))) for img in imgs]
    return [np.stack(padded, axis=0).astype(dtype=np.float32, copy=False)]


class _Stock:
    def __call__(self, imgs: list[np.ndarray]) -> list[np.ndarray]:
        return paddlex_rec_to_batch(imgs)


def _det_case(h: int, w: int) -> dict:
    from cuda_test_kernels import StandInEnqueuer
    from standin_trt import StandInEngine

    outs = [((1, 1, h, w), np.float32), ((1, 1, h, (w + 7) // 8), np.uint8)]
    engine = StandInEngine(
        [("x", np.uint8), ("db_thresh", np.float32)],
        [("prob", np.float32), ("bitmap", np.uint8)],
        [{"x": ShapeProfile((1, 32, 32, 3), (1, h, w, 3), (1, h, w, 3)),
          "db_thresh": ShapeProfile((1,), (1,), (1,))}],
        lambda: StandInEnqueuer(lambda _s: [s for s, _ in outs], [d for _, d in outs]),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8)]
    return {"name": f"det u8 1x{h}x{w}x3", "engine": engine, "imgs": imgs, "resident": ["prob"],
            "producer": lambda p: StackUint8WithThresh(p, _DBPost())}  # fmt: skip


def _rec_case(width: int) -> dict:
    from cuda_test_kernels import StandInEnqueuer
    from standin_trt import StandInEngine

    t = width // 8
    outs = [((6, t), np.int32), ((6, t), np.float32)]
    engine = StandInEngine(
        [("x", np.float32)],
        [("index", np.int32), ("prob", np.float32)],
        [{"x": ShapeProfile((1, 3, 48, 32), (6, 3, 48, width), (6, 3, 48, width))}],
        lambda: StandInEnqueuer(lambda _s: [s for s, _ in outs], [d for _, d in outs]),
    )
    rng = np.random.default_rng(1)
    # six crops, as PaddleX's ReisizeNorm leaves them: CHW float32, widths up to the batch's
    widths = [max(320, width - k * width // 10) for k in range(6)]
    imgs = [rng.standard_normal((3, 48, w)).astype(np.float32) for w in widths]
    return {"name": f"rec f32 6x3x48x{width}", "engine": engine, "imgs": imgs, "resident": [],
            "producer": lambda p: PadStackFloat32(p, _Stock())}  # fmt: skip


def _calls(case: dict, reps: int) -> list[dict]:
    from standin_trt import standin_runner

    rows = []
    with standin_runner(case["engine"], resident_outputs=case["resident"]) as runner:
        producer = case["producer"](_Predictor(runner))
        imgs = case["imgs"]

        def call(views: bool) -> tuple[float, float]:
            scope = input_view_scope() if views else contextlib.nullcontext()
            t0 = time.perf_counter()
            with scope:
                x = producer(imgs)
                t1 = time.perf_counter()
                outs = runner.infer(x)
            t2 = time.perf_counter()
            for o in outs:
                if hasattr(o, "release"):
                    o.release()
            return t1 - t0, t2 - t0

        for method, views in (("before (stack, staged)", False), ("after (stack into view)", True)):
            for _ in range(5):
                call(views)
            ex = runner._executors[0]
            before = ex.stats
            prod, total, wait = [], [], []
            for _ in range(reps):
                p, tt = call(views)
                prod.append(p)
                total.append(tt)
                wait.append(ex.stats.last_sync_wait_s)
            after = ex.stats
            n_in = len(case["engine"].inputs)
            zero = after.zero_copy_inputs - before.zero_copy_inputs
            assert zero == (reps * n_in if views else 0), (method, zero)
            host = [tt - w for tt, w in zip(total, wait, strict=True)]
            nbytes = sum(int(a.nbytes) for a in producer(imgs))
            rows.append({
                "case": case["name"], "method": method, "in_bytes": nbytes, "reps": reps,
                "producer_ms": statistics.median(prod) * 1e3,
                "host_ms": statistics.median(host) * 1e3,
                "end_to_end_ms": statistics.median(total) * 1e3,
                "end_to_end_min_ms": min(total) * 1e3,
            })  # fmt: skip
    return rows


def measure_producer(reps: int = 50) -> list[dict]:
    cases = [_det_case(960, 960), _det_case(1408, 992)]
    cases += [_rec_case(w) for w in (320, 640, 960, 1280, 1600)]
    rows = []
    for case in cases:
        rows += _calls(case, reps)
    return rows


def producer_table(rows: list[dict]) -> str:
    lines = [
        "producer -> TensorRTRunner (stand-in engine, NOT TensorRT) per call, medians",
        f"{'case':<24} {'method':<26} {'in MB':>6} {'producer ms':>12} {'host ms':>9}"
        f" {'end-to-end ms':>14} {'min ms':>8}",
    ]
    for r in rows:
        lines.append(
            f"{r['case']:<24} {r['method']:<26} {r['in_bytes'] / 1e6:6.2f}"
            f" {r['producer_ms']:12.3f} {r['host_ms']:9.3f} {r['end_to_end_ms']:14.3f}"
            f" {r['end_to_end_min_ms']:8.3f}"
        )
    return "\n".join(lines)
