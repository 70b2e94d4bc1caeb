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


#: set on every runner this package hands PaddleX (``TimedRunner``)
RUNNER_MARK = "__paddleocr_trt_runner__"


def is_our_runner(runner: object) -> bool:
    return bool(getattr(runner, RUNNER_MARK, False))


class TimedRunner:
    """Forwards to a PaddleX runner and adds its wall time (the *engine* time of its stage) and
    the bytes it returned to the stage timers (:func:`take_stage_timings`).

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
        out = None
        try:
            out = self.inner(*args, **kwargs)  # type: ignore[operator]
            return out
        finally:
            elapsed = time.perf_counter() - start
            _add(self.model_name, calls=1, engine=elapsed, nbytes=_nbytes(out))

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def _nbytes(outputs: object) -> int:
    if not isinstance(outputs, list | tuple):
        return 0
    return sum(int(getattr(o, "nbytes", 0)) for o in outputs)


_STAGES = {"detection": "det", "classification": "orientation", "recognition": "rec"}


def stage_of(model_name: str) -> str:
    """ "det", "orientation" or "rec" for PaddleOCR's models; the model name otherwise."""
    from ..model_types import model_type_from_name

    mtype = model_type_from_name(model_name)
    return _STAGES[mtype.value] if mtype is not None else model_name


@dataclass(frozen=True)
class StageTiming:
    """Where one model's time went since the last :func:`take_stage_timings`.

    ``engine_seconds``: inside the runner (TensorRT / ONNX Runtime / Paddle, and a native
    fallback's host normalisation when one ran). ``host_seconds``: the rest of the PaddleX
    predictor's ``process`` calls (reading, resizing, normalising, batching, decoding, DB
    post-processing); None when no ``process`` call was seen (a runner called directly).
    ``output_bytes``: what the engine returned (rec over a fused graph: (index, max prob)
    instead of the full softmax).
    """

    model_name: str
    stage: str
    calls: int
    engine_seconds: float
    process_calls: int
    process_seconds: float
    output_bytes: int

    @property
    def host_seconds(self) -> float | None:
        if not self.process_calls:
            return None
        return max(0.0, self.process_seconds - self.engine_seconds)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "host_seconds": self.host_seconds}


_timings: dict[str, dict[str, float]] = {}  # model name -> counters


def _add(model_name: str, **amounts: float) -> None:
    with _lock:
        entry = _timings.setdefault(
            model_name,
            {"calls": 0, "engine": 0.0, "process_calls": 0, "process": 0.0, "nbytes": 0},
        )
        for key, value in amounts.items():
            entry[key] += value


def add_output_bytes(model_name: str, nbytes: int) -> None:
    """Bytes an engine output copied to the host after the call returned (windows of a
    resident map): counted in ``output_bytes`` like the arrays it returned."""
    _add(model_name, nbytes=nbytes)


def add_engine_time(model_name: str, seconds: float) -> None:
    """Engine work asked for after the call returned (box sums over a resident map, run by the
    engine that holds it): engine seconds of the same model, not another call."""
    _add(model_name, engine=seconds)


def add_process_time(model_name: str, seconds: float) -> None:
    """One PaddleX predictor ``process`` call of ``model_name`` (engine time included)."""
    _add(model_name, process_calls=1, process=seconds)


def take_stage_timings() -> dict[str, StageTiming]:
    """Per-model :class:`StageTiming` since the last call (or process start); resets them.

    Public: after ``ocr.predict(...)`` with the hook active, this says per stage (``det``,
    ``orientation``, ``rec``) how long the engine ran and how long PaddleX's host code around it
    took, and how many bytes the engine returned::

        paddleocr_trt.take_stage_timings()          # reset
        ocr.predict("page.png")
        for t in paddleocr_trt.take_stage_timings().values():
            print(t.stage, t.engine_seconds, t.host_seconds, t.output_bytes)

    Counters are process-wide (all PaddleOCR instances); :func:`take_stage_times` shares them.
    """
    with _lock:
        taken = dict(_timings)
        _timings.clear()
    return {
        name: StageTiming(
            model_name=name,
            stage=stage_of(name),
            calls=int(c["calls"]),
            engine_seconds=float(c["engine"]),
            process_calls=int(c["process_calls"]),
            process_seconds=float(c["process"]),
            output_bytes=int(c["nbytes"]),
        )
        for name, c in taken.items()
    }


def take_stage_times() -> dict[str, tuple[int, float]]:
    """Per-model (engine calls, engine seconds) since the last call; resets the counters
    (the same ones as :func:`take_stage_timings`)."""
    return {n: (t.calls, t.engine_seconds) for n, t in take_stage_timings().items()}
