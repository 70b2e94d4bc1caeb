"""ONNX Runtime backend; onnxruntime is imported when a runner is built."""

from .runner import OnnxRuntimeRunner

__all__ = ["OnnxRuntimeRunner"]
