"""Exceptions that carry a user-facing reason; every fallback path logs ``str(error)``."""

from __future__ import annotations

import re

_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)):\s*(\S.*)$")


class PaddleOCRTRTError(Exception):
    """Base class: something this package could not do; the message says what and why."""


class ModelDirError(PaddleOCRTRTError, ValueError):
    """A model directory is missing, incomplete or not a Paddle inference model."""


class UnsupportedModelTypeError(PaddleOCRTRTError, ValueError):
    """A model type outside detection / recognition / classification."""


class ModelTypeMismatchError(UnsupportedModelTypeError):
    """The declared model type is not the one the model's inference.yml describes."""


class OutputPathError(PaddleOCRTRTError, ValueError):
    """An output path (``-o``) cannot be written: not a regular file, or its dir is unwritable."""


class ConversionError(PaddleOCRTRTError):
    """Paddle -> ONNX conversion failed; the message (one line) names model, step, versions and
    the child's own error; ``details`` keeps the child's traceback and stderr (logged at INFO:
    ``paddleocr-trt --verbose``, ``PADDLEOCR_TRT_LOG_LEVEL=INFO``)."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class ValidationFailedError(PaddleOCRTRTError):
    """An artifact disagreed with native Paddle beyond the accuracy threshold."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class CacheError(PaddleOCRTRTError):
    """The engine cache could not be read or written (permissions, disk full, corruption)."""


class TensorRTUnavailableError(PaddleOCRTRTError):
    """TensorRT (or a CUDA GPU) is not usable here; the message says what to install."""


class EngineBuildError(PaddleOCRTRTError):
    """TensorRT could not build an engine; carries the builder's own error lines."""


class OutOfMemoryError(PaddleOCRTRTError, MemoryError):
    """The GPU ran out of memory even after backing off."""


def summary_line(text: str, limit: int = 400) -> str:
    """The line of a multi-line error text that says what went wrong: the last ``XxxError:
    message`` line (Paddle puts its own error under a Python traceback), else the first line."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return ""
    for line in reversed(lines):
        match = _ERROR_LINE.match(line)
        if match and not match.group(2).startswith("In user code"):
            return line[:limit]
    return lines[0][:limit]
