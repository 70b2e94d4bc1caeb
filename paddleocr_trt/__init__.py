"""TensorRT engines for PaddleOCR 3.x.

``pip install paddleocr-trt`` is enough: ``PaddleOCR(..., use_tensorrt=True)`` then routes det,
rec and text-line orientation through cached, validated TensorRT engines and falls back to native
Paddle (saying why, once) when that is impossible. Importing this package explicitly does the
same. This module stays import-light: it is loaded at every interpreter start (and therefore
before pytest's assertion rewriting: PYTEST_DONT_REWRITE).
"""

from __future__ import annotations

from . import _startup
from ._version import __version__

_LAZY = {
    "TensorRTOptimizer": "paddleocr_trt.optimizer",
    "OptimizationResult": "paddleocr_trt.optimizer",
    "BenchmarkResult": "paddleocr_trt.optimizer",
    "ModelType": "paddleocr_trt.model_types",
    "EngineCache": "paddleocr_trt.cache.store",
    "backend_report": "paddleocr_trt.integration.report",
    "take_stage_timings": "paddleocr_trt.integration.report",
    "StageTiming": "paddleocr_trt.integration.report",
}

__all__ = ["__version__", "activate", *_LAZY]


def activate() -> bool:
    """Patch PaddleOCR/PaddleX now or when they are imported; False if disabled by env."""
    return _startup.install()


def __getattr__(name: str) -> object:  # typing is not imported: ~10 ms at start-up
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'paddleocr_trt' has no attribute {name!r}")
