"""Which backend each model actually got, and why: the demo and ``doctor`` print this."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class BackendDecision:
    model_name: str
    model_dir: str | None
    backend: str  # "tensorrt" | "paddle"
    reason: str  # why this backend ("engine loaded from cache", "TensorRT is not installed", ...)
    precision: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


_decisions: list[BackendDecision] = []
_lock = threading.Lock()


def record(decision: BackendDecision) -> None:
    with _lock:
        _decisions.append(decision)


def backend_report() -> list[BackendDecision]:
    """Every decision taken in this process, oldest first."""
    with _lock:
        return list(_decisions)


def clear() -> None:
    with _lock:
        _decisions.clear()


class TimedRunner:
    """Forwards to a PaddleX runner and adds its wall time to :data:`stage_times`.

    PaddleX predictors only call ``runner(x=...)`` and ``runner.close()``; everything else is
    forwarded untouched. The cost is two clock reads per batch.
    """

    __paddleocr_trt_runner__ = True

    def __init__(self, inner: object, model_name: str, backend: str) -> None:
        self.inner = inner
        self.model_name = model_name
        self.backend = backend

    def __call__(self, *args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)  # type: ignore[operator]
        finally:
            _add_time(self.model_name, time.perf_counter() - start)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


stage_times: dict[str, list[float]] = {}  # model name -> [calls, seconds]


def _add_time(model_name: str, seconds: float) -> None:
    with _lock:
        entry = stage_times.setdefault(model_name, [0, 0.0])
        entry[0] += 1
        entry[1] += seconds


def take_stage_times() -> dict[str, tuple[int, float]]:
    """Per-model (calls, seconds) since the last call; resets the counters."""
    with _lock:
        taken = {name: (int(c), s) for name, (c, s) in stage_times.items()}
        stage_times.clear()
    return taken
