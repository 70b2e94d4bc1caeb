"""Where PaddleX meets this package: per-model decision, TensorRT path, native fallback."""
