"""The one interface every backend's runner implements.

It is PaddleX's ``InferenceRunner`` contract (``__call__(list[np.ndarray]) -> list[np.ndarray]``
plus ``close()``) so a runner can be handed straight to a PaddleX predictor, plus a name and a
backend label so logs and the demo can say what actually ran.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Sequence

import numpy as np

_lane = threading.local()


def mark_one_thread_lane() -> None:
    """Initializer of a thread pool whose workers make engine calls side by side (the pipelined
    path's CPU lanes): runners that can (ONNX Runtime on the CPU) compute each call made from
    such a thread on that one thread, the pool's workers being the parallelism. On 2 cores, two
    one-thread calls side by side beat one two-thread call after another (issue 22, see
    ``pipelined.call_sizes``)."""
    _lane.one_thread = True


def in_one_thread_lane() -> bool:
    """Whether the calling thread is a one-thread lane (:func:`mark_one_thread_lane`)."""
    return bool(getattr(_lane, "one_thread", False))


class BaseRunner(abc.ABC):
    #: "tensorrt", "onnxruntime" or "paddle"
    backend: str = "unknown"

    def __init__(self, name: str) -> None:
        self.name = name
        self._closed = False

    @abc.abstractmethod
    def infer(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one forward pass; inputs in the model's input order, outputs in its output order."""

    def check_inputs(self, inputs: Sequence[np.ndarray]) -> None:
        """Refuse a call after close() or with the wrong number of inputs, naming the inputs."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        names = list(getattr(self, "input_names", None) or [])
        if names and len(inputs) != len(names):
            raise ValueError(
                f"{self.name}: model takes {len(names)} input(s) {names}, got {len(inputs)}"
            )

    def __call__(self, x: Sequence[np.ndarray] | None = None, **kwargs: object) -> list[np.ndarray]:
        if x is None:
            x = list(kwargs.values())
        if isinstance(x, np.ndarray):
            x = [x]
        return self.infer(list(x))

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> BaseRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, backend={self.backend!r})"
