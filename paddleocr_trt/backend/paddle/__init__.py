"""Native Paddle Inference backend (the validation reference); paddle is imported lazily."""

from .runner import PaddleInferenceRunner

__all__ = ["PaddleInferenceRunner"]
