"""Native Paddle as a safety net behind an engine runner.

The native runner is PaddleX's own, created only when first needed (it costs a Paddle predictor).
:class:`GuardedRunner` switches a model to it for good when its engine fails at inference, so an
engine that breaks mid-run (a CUDA error, an execution provider fault) costs one warning, not the
user's program.

Both are safe to call from several threads (the pipelined path and users' threads do): the
native runner is created once and called by one thread at a time (a Paddle predictor is not
re-entrant), and the switch to it happens once however many calls fail together.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..backend.base import BaseRunner
from ..log import get_logger, warn_once

log = get_logger("integration")


class LazyNativeRunner(BaseRunner):
    """PaddleX's own Paddle runner, created only if an engine ever hands a call back."""

    backend = "paddle"

    def __init__(self, name: str, factory: Callable[[], Any]) -> None:
        super().__init__(name)
        self._factory = factory
        self._runner: Any = None
        self._lock = threading.Lock()

    def infer(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            if self._runner is None:
                self._runner = self._factory()
            return list(self._runner(x=list(inputs)))

    def close(self) -> None:
        with self._lock:
            if self._runner is not None:
                self._runner.close()
        super().close()


class GuardedRunner(BaseRunner):
    """``primary`` until it raises; then ``fallback`` for the rest of the process.

    The failing call itself is answered by the fallback, so the caller sees either the engine's
    result or Paddle's (and, for input Paddle rejects too, Paddle's own exception type).
    """

    def __init__(self, primary: BaseRunner, fallback: BaseRunner, model_name: str) -> None:
        super().__init__(model_name)
        self.primary = primary
        self.fallback = fallback
        self.input_names = getattr(primary, "input_names", None)
        self.engine_failures = 0
        self.failure: str | None = None
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:  # type: ignore[override]
        return self.fallback.backend if self.failure else self.primary.backend

    def infer(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.failure is None:
            try:
                return self.primary.infer(inputs)
            except Exception as exc:
                self._switch_to_fallback(exc)
        return self.fallback.infer(inputs)

    def _switch_to_fallback(self, exc: Exception) -> None:
        with self._lock:
            self.engine_failures += 1
            if self.failure is not None:  # another thread's call switched already
                return
            self.failure = f"{type(exc).__name__}: {exc}"
            warn_once(
                ("engine-failed-at-inference", self.name),
                "%s: the %s engine failed at inference (%s); running native Paddle "
                "inference for this model from now on.",
                self.name,
                self.primary.backend,
                self.failure,
            )
            self._close_primary()

    def _close_primary(self) -> None:
        try:
            self.primary.close()
        except Exception as exc:  # a broken engine may fail to close too; nothing to save
            log.debug("closing the failed %s runner: %s", self.primary.backend, exc)

    def close(self) -> None:
        if self.failure is None:
            self._close_primary()
        self.fallback.close()
        super().close()


def engine_runner(runner: Any) -> Any:
    """The runner under our wrappers that says where it computes (``providers``), or None."""
    for _ in range(8):
        if getattr(runner, "providers", None) is not None:
            return runner
        runner = getattr(runner, "primary", None) or getattr(runner, "inner", None)
        if runner is None:
            return None
    return None


def on_cpu(runner: Any) -> bool:
    """Whether a runner (through our wrappers) is an ONNX Runtime session on the CPU only."""
    inner = engine_runner(runner)
    return inner is not None and list(inner.providers) == ["CPUExecutionProvider"]


def cpu_threads_of(runner: Any) -> int:
    """Compute threads a CPU runner was given (PaddleOCR's ``cpu_threads``, capped at the
    cores; the cores where it was not set)."""
    threads = getattr(engine_runner(runner), "threads", None)
    return int(threads) if threads else os.cpu_count() or 1
    return False
