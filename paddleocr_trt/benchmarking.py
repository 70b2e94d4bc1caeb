"""Latency and throughput of one runner over a sweep of batch sizes, on inputs cut from the
real validation images: what ``TensorRTOptimizer.benchmark_performance`` and the optimize
report's latency pair measure. Apart from the optimizer so that its API stays one page.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backend.base import BaseRunner
from .comparator.inputs import ImageInput, build_validation_inputs
from .log import get_logger
from .model_types import ModelType

log = get_logger("optimizer")

#: Benchmark input shape (C, H, W) per model type; batch size varies.
BENCHMARK_SHAPES = {
    ModelType.DETECTION: (3, 640, 640),
    ModelType.RECOGNITION: (3, 48, 320),
    ModelType.CLASSIFICATION: (3, 48, 192),
}


def jsonable(value: Any) -> Any:
    """``value`` with paths as strings, for ``to_dict``."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


@dataclass
class BenchmarkResult:
    engine_path: Path | None
    model_type: str
    backend: str
    batch_sizes: list[int]
    latencies: list[dict[str, float]]
    throughputs: list[float]
    peak_gpu_memory_bytes: int | None = None
    baseline: BenchmarkResult | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = jsonable(asdict(self))
        data["baseline"] = self.baseline.to_dict() if self.baseline else None
        return data


def benchmark_input(
    images: Sequence[ImageInput], model_dir: Path, mtype: ModelType, batch: int
) -> np.ndarray:
    """A ``batch`` of the model's benchmark shape cut from the real validation images."""
    c, h, w = BENCHMARK_SHAPES[mtype]
    if mtype is ModelType.DETECTION:
        tensors = build_validation_inputs(
            mtype, images[:1], model_dir=model_dir, shapes=[max(h, w)]
        )
    else:
        tensors = build_validation_inputs(
            mtype, images, model_dir=model_dir, max_shape=(1, c, h, w)
        )
    sample = next((t for t in tensors if t.shape[1:] == (c, h, w)), None)
    if sample is None:  # pad/crop the first real tensor to the benchmark shape
        src = tensors[0][:1]
        sample = np.zeros((1, c, h, w), dtype=np.float32)
        hh, ww = min(h, src.shape[2]), min(w, src.shape[3])
        sample[:, :, :hh, :ww] = src[:, :, :hh, :ww]
    return np.ascontiguousarray(np.repeat(sample[:1], batch, axis=0))


def sweep(
    runner: BaseRunner,
    images: Sequence[ImageInput],
    model_dir: Path,
    mtype: ModelType,
    batches: list[int],
    warmup: int,
    iterations: int,
    *,
    track_gpu: bool = False,
    device_id: int = 0,
) -> tuple[BenchmarkResult, int | None]:
    """Returns the result and the lowest free GPU memory seen (for the peak estimate)."""
    latencies, throughputs = [], []
    min_free = None
    for step, batch in enumerate(batches, 1):
        log.info(
            "benchmark %s %s: batch %d (%d/%d)",
            runner.backend,
            mtype.value,
            batch,
            step,
            len(batches),
        )
        x = engine_input(runner, benchmark_input(images, model_dir, mtype, batch), model_dir)
        stats = latency_stats(runner, [x], warmup=warmup, iterations=iterations)
        latencies.append(stats)
        throughputs.append(batch / (stats["mean"] / 1000.0))
        if track_gpu:
            from .backend.cuda.runtime import mem_get_info

            free, _ = mem_get_info(device_id)
            min_free = free if min_free is None else min(min_free, free)
    result = BenchmarkResult(None, mtype.value, runner.backend, batches, latencies, throughputs)
    return result, min_free


def engine_input(runner: BaseRunner, x: np.ndarray, model_dir: Path) -> np.ndarray:
    """``x`` (float NCHW) as the runner takes it: engines over a fused det/cls graph take uint8
    NHWC images (same H, W and batch; for latency only the shape matters)."""
    inputs = getattr(getattr(runner, "engine", None), "inputs", None)
    if inputs and np.dtype(inputs[0].dtype) == np.uint8:
        from .comparator.fused import uint8_like

        return uint8_like(x, model_dir)
    return x


def latency_stats(
    runner: BaseRunner, inputs: list[np.ndarray], *, warmup: int, iterations: int
) -> dict[str, float]:
    for _ in range(max(0, warmup)):
        runner.infer(inputs)
    times = []
    for _ in range(max(1, iterations)):
        start = time.perf_counter()
        runner.infer(inputs)
        times.append((time.perf_counter() - start) * 1000.0)
    ordered = sorted(times)

    def pct(q: float) -> float:
        return float(np.percentile(ordered, q))

    return {"mean": statistics.fmean(times), "p50": pct(50), "p90": pct(90), "p99": pct(99)}
