"""Engine time per row against rows per call, on this machine's CPU (issue 22).

The evidence behind ``paddleocr_trt.pipelined.call_sizes.CPU_CALLS``: PP-OCRv4 mobile rec over
ONNX Runtime's CPU provider (the session options the package uses), rows x padded width per call,
and det with one or two same-size pages per call. Each entry is one group member, ``ms_per_row``
in its ``extra_info``; the summary prints the table and the best rows per width.

    pytest benchmarks/bench_call_sizes.py -s -p no:cacheprovider --benchmark-json=calls.json
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paddleocr_trt.model_types import ModelType
from paddleocr_trt.optimizer import TensorRTOptimizer

WIDTHS = (320, 400, 560, 720, 1280, 1920)
ROWS = (1, 2, 3, 4, 6, 12)
THREADS = min(2, os.cpu_count() or 1)
ROUNDS = int(os.environ.get("PADDLEOCR_TRT_BENCH_ROUNDS", "3"))
REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("PADDLEOCR_TRT_TEST_CACHE", REPO_ROOT / ".cache" / "test")) / "bench"
TABLE: dict[tuple[str, int], dict[int, float]] = {}


@pytest.fixture(scope="module")
def sessions(ocr_models: Any) -> dict[str, Any]:
    import onnxruntime as ort

    from paddleocr_trt.engines.onnxruntime.session import session_options

    optimizer = TensorRTOptimizer(precision="fp32", cache_dir=CACHE)
    out = {}
    for name, kind in (("rec", ModelType.RECOGNITION), ("det", ModelType.DETECTION)):
        report = optimizer.convert_model(ocr_models.dir_for(kind), model_type=kind)
        assert report.passed, report.error
        out[name] = ort.InferenceSession(
            str(report.onnx_path), session_options(THREADS), providers=["CPUExecutionProvider"]
        )
    return out


def _run(benchmark: Any, session: Any, x: np.ndarray, group: str, key: tuple) -> None:
    feed = {session.get_inputs()[0].name: x}
    session.run(None, feed)  # shapes planned, arena grown
    benchmark.group = group
    benchmark.pedantic(lambda: session.run(None, feed), rounds=ROUNDS, iterations=1)
    per_row = 1000 * benchmark.stats.stats.min / x.shape[0]
    benchmark.extra_info.update({"rows": x.shape[0], "shape": list(x.shape), "ms_per_row": per_row})
    TABLE.setdefault(key, {})[x.shape[0]] = per_row


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("width", WIDTHS)
def test_rec_rows_per_call(benchmark: Any, sessions: dict, width: int, rows: int) -> None:
    x = np.random.default_rng(0).random((rows, 3, 48, width), dtype=np.float32)
    _run(benchmark, sessions["rec"], x, f"rec-W{width}", ("rec", width))


@pytest.mark.parametrize("pages", (1, 2))
def test_det_pages_per_call(benchmark: Any, sessions: dict, pages: int) -> None:
    x = np.random.default_rng(0).random((pages, 3, 1376, 992), dtype=np.float32)
    _run(benchmark, sessions["det"], x, "det-1376x992", ("det", 1376))


def test_summary() -> None:
    from paddleocr_trt.pipelined.call_sizes import CPU_CALLS

    if not TABLE:
        pytest.skip("run the whole file")
    print(f"\nms per row (best of {ROUNDS}), {THREADS} threads; CPU_CALLS={CPU_CALLS}")
    for (model, width), by_rows in sorted(TABLE.items()):
        best = min(by_rows, key=by_rows.get)
        cells = " ".join(f"{n}:{ms:.1f}" for n, ms in sorted(by_rows.items()))
        print(f"{model} W={width}: {cells}  best {best} rows")
