"""Per-model latency and throughput: native Paddle vs ONNX Runtime vs TensorRT, in one run.

Every (model, batch) is one pytest-benchmark group with one entry per backend, so
``benchmarks/report.py`` can put the backends side by side and take ratios from the same run.
A backend that cannot run here (TensorRT without a GPU) is skipped with the reason, and the reason
is also written into the other entries' ``extra_info["skipped_backends"]`` so the JSON keeps it.

    pytest benchmarks/bench_models.py --benchmark-json=run.json
    PADDLEOCR_TRT_BENCH_SCALE=quick pytest benchmarks/bench_models.py ...   # a few batch sizes
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paddleocr_trt.benchmarking import BENCHMARK_SHAPES
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.optimizer import TensorRTOptimizer

SCALE = os.environ.get("PADDLEOCR_TRT_BENCH_SCALE", "full").strip().lower()
BATCHES = {
    "full": {"det": (1, 2, 4), "rec": (1, 8, 16, 32, 50), "cls": (1, 8, 16, 32, 50)},
    "quick": {"det": (1,), "rec": (1, 8), "cls": (1, 8)},
}[SCALE if SCALE in ("full", "quick") else "full"]
ROUNDS = int(os.environ.get("PADDLEOCR_TRT_BENCH_ROUNDS", "3" if SCALE == "quick" else "10"))
MODELS = {"det": ModelType.DETECTION, "rec": ModelType.RECOGNITION, "cls": ModelType.CLASSIFICATION}
BACKENDS = ("paddle", "onnxruntime", "tensorrt")
CASES = [(m, b, backend) for m, sizes in BATCHES.items() for b in sizes for backend in BACKENDS]

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("PADDLEOCR_TRT_TEST_CACHE", REPO_ROOT / ".cache" / "test")) / "bench"


@pytest.fixture(scope="module")
def optimizer() -> TensorRTOptimizer:
    return TensorRTOptimizer(precision="fp16", cache_dir=CACHE)


@pytest.fixture(scope="module")
def skipped_backends(optimizer: TensorRTOptimizer) -> dict[str, str]:
    reason = optimizer.tensorrt_unavailable_reason()
    return {"tensorrt": reason} if reason else {}


class _Artifacts:
    """Validated ONNX files and engines, made on first use and cached on disk across runs."""

    def __init__(self, optimizer: TensorRTOptimizer, models: Any) -> None:
        self.optimizer, self.models = optimizer, models
        self._made: dict[tuple[str, str], Any] = {}

    def model_dir(self, model: str) -> Path:
        return self.models.dir_for(MODELS[model])

    def onnx(self, model: str) -> Path:
        key = ("onnx", model)
        if key not in self._made:
            report = self.optimizer.convert_model(self.model_dir(model), model_type=MODELS[model])
            self._made[key] = report.onnx_path if report.passed else report.error
        if not isinstance(self._made[key], Path):
            pytest.skip(f"ONNX conversion of {model} failed: {self._made[key]}")
        return self._made[key]

    def engine(self, model: str) -> Path:
        key = ("engine", model)
        if key not in self._made:
            result = self.optimizer.optimize_model(self.model_dir(model), model_type=MODELS[model])
            self._made[key] = result.engine_path if result else self.optimizer.last_failure
        if not isinstance(self._made[key], Path):
            pytest.skip(f"TensorRT engine for {model} unavailable: {self._made[key]}")
        return self._made[key]


@pytest.fixture(scope="module")
def artifacts(optimizer: TensorRTOptimizer, ocr_models: Any) -> _Artifacts:
    return _Artifacts(optimizer, ocr_models)


def _device() -> str:
    from paddleocr_trt.integration.decision import cuda_status

    return "gpu" if cuda_status().ok else "cpu"


def _open_runner(backend: str, model: str, artifacts: _Artifacts) -> Any:
    if backend == "paddle":
        from paddleocr_trt.backend.paddle.runner import PaddleInferenceRunner

        return PaddleInferenceRunner(artifacts.model_dir(model), device=_device())
    if backend == "onnxruntime":
        import onnxruntime as ort

        from paddleocr_trt.engines.onnxruntime.runner import OnnxRuntimeRunner

        preferred = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        providers = [p for p in preferred if p in ort.get_available_providers()]
        return OnnxRuntimeRunner(artifacts.onnx(model), providers=providers)
    from paddleocr_trt.engines.tensorrt.runner import TensorRTRunner

    return TensorRTRunner(artifacts.engine(model))


@pytest.fixture(scope="module")
def runners(artifacts: _Artifacts) -> Iterator[dict[tuple[str, str], Any]]:
    """One runner per (backend, model), loaded once and reused across batch sizes."""
    opened: dict[tuple[str, str], Any] = {}

    def get(backend: str, model: str) -> Any:
        if (backend, model) not in opened:
            opened[(backend, model)] = _open_runner(backend, model, artifacts)
        return opened[(backend, model)]

    yield get  # type: ignore[misc]
    for runner in opened.values():
        runner.close()


def _batch(model: str, batch: int) -> np.ndarray:
    c, h, w = BENCHMARK_SHAPES[MODELS[model]]
    rng = np.random.default_rng(0)  # normalised-image range; same tensor for every backend
    return rng.uniform(-2.0, 2.0, size=(batch, c, h, w)).astype(np.float32)


@pytest.mark.parametrize(("model", "batch", "backend"), CASES, ids=lambda v: str(v))
def test_model_latency(
    benchmark: Any,
    runners: Any,
    skipped_backends: dict[str, str],
    model: str,
    batch: int,
    backend: str,
) -> None:
    if backend in skipped_backends:
        pytest.skip(f"{backend}: {skipped_backends[backend]}")
    runner = runners(backend, model)
    x = [_batch(model, batch)]
    outputs = runner.infer(x)  # warm-up outside the timed rounds; also a sanity check
    assert outputs and outputs[0].shape[0] == batch
    benchmark.group = f"{model} batch {batch}"
    benchmark.extra_info.update(
        model=model,
        model_type=MODELS[model].value,
        batch=batch,
        backend=backend,
        device=_device(),
        input_shape=list(x[0].shape),
        images_per_round=batch,
        skipped_backends=dict(skipped_backends),
    )
    benchmark.pedantic(runner.infer, args=(x,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
