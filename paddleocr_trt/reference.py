"""The runner every validation compares against: the model's own source, run the plain way.

A Paddle model dir: native Paddle Inference on the CPU (what PaddleOCR runs). An ONNX model dir
(``inference.onnx``, nothing converted): ONNX Runtime on the CPU running that source graph, so
validating engine graphs (fused, fp16, TensorRT plans) needs no Paddle. The runner carries the
resolved model (``resolved_model``), so comparisons read its post-processing from memory.
"""

from __future__ import annotations

import os

from .backend.base import BaseRunner
from .model_resolve import ResolvedModel


def reference_runner(model: ResolvedModel, *, name: str | None = None) -> BaseRunner:
    threads = os.cpu_count() or 1  # one per core: Paddle's default of 10 oversubscribes
    runner: BaseRunner
    if model.is_onnx:
        from .engines import registry

        # the ONNX Runtime engine runs any ONNX graph on the CPU (its contract's graph_runner)
        runner = registry.engine("onnxruntime").graph_runner(
            model.files.program, name=name or f"onnxruntime-source:{model.name}"
        )
    else:
        from .backend.paddle.runner import PaddleInferenceRunner

        runner = PaddleInferenceRunner(
            model.files, device="cpu", cpu_threads=threads, name=name or f"paddle:{model.name}"
        )
    runner.resolved_model = model  # type: ignore[attr-defined]
    return runner
