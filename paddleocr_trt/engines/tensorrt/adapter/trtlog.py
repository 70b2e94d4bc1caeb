"""TensorRT's logger and progress monitor, subclassed from the bindings' trampolines.

The recording logger keeps each thread's errors so a failed call (which TensorRT mostly reports
as None/False plus a log line) can be told apart: out of memory or something else.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .api import _api, _load_lock, _mod, logger

#: TensorRT-RTX says "Error Code 2: OutOfMemory (Requested size was N bytes.)"
OOM_MARKERS = (
    "out of memory",
    "insufficient memory",
    "requested amount of gpu memory",
    "outofmemory",
)


def is_oom_message(message: str) -> bool:
    low = message.lower()
    return any(marker in low for marker in OOM_MARKERS)


def _logger_class(trt: Any) -> type:
    base = _api("ILogger", trt)
    severities = {
        "INTERNAL_ERROR": _api("ILogger.Severity.INTERNAL_ERROR", trt),
        "ERROR": _api("ILogger.Severity.ERROR", trt),
        "WARNING": _api("ILogger.Severity.WARNING", trt),
        "INFO": _api("ILogger.Severity.INFO", trt),
        "VERBOSE": _api("ILogger.Severity.VERBOSE", trt),
    }
    errors_ = (severities["INTERNAL_ERROR"], severities["ERROR"])
    to_py = {
        severities["INTERNAL_ERROR"]: 40,
        severities["ERROR"]: 40,
        severities["WARNING"]: 30,
        severities["INFO"]: 10,
        severities["VERBOSE"]: 5,
    }

    class RecordingLogger(base):  # type: ignore[misc, valid-type]
        """Forwards TensorRT messages to the package logger and keeps the errors per thread.

        One instance per process: TensorRT keeps the first logger it was given and ignores
        later ones, so a logger per build would record nothing.
        """

        def __init__(self) -> None:
            base.__init__(self)
            self._local = threading.local()

        def _errors(self) -> list[str]:
            return self._local.__dict__.setdefault("errors", [])

        def log(self, severity: Any, msg: str) -> None:
            if severity in errors_:
                errs = self._errors()
                errs.append(str(msg))
                del errs[:-50]
            logger.log(to_py.get(severity, 10), "TensorRT: %s", msg)

        def recorded_errors(self) -> list[str]:
            """Errors logged on the calling thread since :meth:`reset_errors`."""
            return list(self._errors())

        def reset_errors(self) -> None:
            self._errors().clear()

    return RecordingLogger


def _progress_class(trt: Any) -> type:
    base = _api("IProgressMonitor", trt)

    class LoggingProgressMonitor(base):  # type: ignore[misc, valid-type]
        """Logs build phases (top level at INFO) and step progress at most every few seconds."""

        def __init__(self, throttle_s: float = 5.0) -> None:
            base.__init__(self)
            self._throttle_s = throttle_s
            self._last = 0.0
            self._steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self._steps[phase_name] = int(num_steps)
            level = 20 if parent_phase is None else 10
            logger.log(level, "TensorRT build: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            now = time.monotonic()
            if now - self._last >= self._throttle_s:
                self._last = now
                total = self._steps.get(phase_name, 0)
                logger.info("TensorRT build: %s step %d/%d", phase_name, step + 1, total)
            return True

        def phase_finish(self, phase_name: str) -> None:
            self._steps.pop(phase_name, None)
            logger.debug("TensorRT build: %s done", phase_name)

    return LoggingProgressMonitor


_class_cache: dict[tuple[int, str], type] = {}
_loggers: dict[int, Any] = {}


def recording_logger(trt: Any | None = None) -> Any:
    """The process-wide recording logger for this module (created on first use)."""
    mod = _mod(trt)
    with _load_lock:
        if id(mod) not in _loggers:
            _loggers[id(mod)] = _logger_class(mod)()
        return _loggers[id(mod)]


def progress_monitor(trt: Any | None = None) -> Any:
    mod = _mod(trt)
    key = (id(mod), "progress")
    if key not in _class_cache:
        _class_cache[key] = _progress_class(mod)
    return _class_cache[key]()
