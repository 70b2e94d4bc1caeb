"""Whole-pipeline images/s: ``PaddleOCR()`` vs ``PaddleOCR(use_tensorrt=True)`` vs the ONNX
Runtime engine (``trt_engine="onnxruntime"``), in one run.

Both pipelines read the same rendered images (det + rec + text-line orientation). The
``use_tensorrt`` entry measures what a user gets from that flag on this machine, so its
``extra_info["backends"]`` says which backend each model really ran on, and why; where that is
native Paddle (no TensorRT here) the entry is the fallback path, not an engine.

    pytest benchmarks/bench_pipeline.py --benchmark-json=run.json
    PADDLEOCR_TRT_BENCH_SCALE=quick ...   # two images per round, fewer rounds
"""

from __future__ import annotations

import os
from typing import Any

import pytest

SCALE = os.environ.get("PADDLEOCR_TRT_BENCH_SCALE", "full").strip().lower()
ROUNDS = int(os.environ.get("PADDLEOCR_TRT_BENCH_ROUNDS", "2" if SCALE == "quick" else "5"))
IMAGES = 2 if SCALE == "quick" else None  # None: every sample image


def _device() -> str:
    from paddleocr_trt.integration.decision import cuda_status

    return "gpu" if cuda_status().ok else "cpu"


@pytest.fixture(scope="module")
def images(sample_images: list[Any]) -> list[str]:
    return [str(s.path) for s in sample_images[:IMAGES]]


@pytest.mark.parametrize("variant", ["native", "use_tensorrt", "onnxruntime"])
def test_pipeline_throughput(
    benchmark: Any, ocr_models: Any, images: list[str], variant: str, engine_cache_dir: str
):
    from paddleocr import PaddleOCR

    import paddleocr_trt
    from paddleocr_trt.integration import report

    kwargs = ocr_models.paddleocr_kwargs(textline_orientation=True)
    report.clear()
    if variant == "native":
        ocr = PaddleOCR(**kwargs, device=_device())
    elif variant == "onnxruntime":
        paddleocr_trt.activate()
        ocr = PaddleOCR(**kwargs, device=_device(), trt_engine="onnxruntime")
    else:
        paddleocr_trt.activate()
        ocr = PaddleOCR(**kwargs, device="gpu", use_tensorrt=True, precision="fp16")
    backends = {d.model_name: f"{d.backend}: {d.reason}" for d in report.backend_report()}

    def run() -> int:
        return sum(len(ocr.predict(path)[0]["rec_texts"]) for path in images)

    lines = run()  # warm-up (also builds or loads engines) outside the timed rounds
    assert lines > 0
    report.take_stage_times()
    benchmark.group = "pipeline"
    benchmark.extra_info.update(
        model="pipeline",
        batch=len(images),
        backend=variant,
        device=_device(),  # where Paddle ran; use_tensorrt asked for "gpu"
        requested_device=_device() if variant == "native" else "gpu",
        images_per_round=len(images),
        text_lines_per_round=lines,
        backends=backends,
    )
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    # Model time per round, per model (the rest of a round is PaddleX's host work).
    benchmark.extra_info["model_seconds_per_round"] = {
        model: seconds / ROUNDS for model, (_, seconds) in report.take_stage_times().items()
    }
