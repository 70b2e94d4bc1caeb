"""The package's one logger, plus "say it once" for fallback reasons.

A fallback reason repeated for every image or every model instance is noise; users asked for one
clear line per reason, so :func:`warn_once` de-duplicates on a key the caller chooses.
"""

from __future__ import annotations

import logging
import threading

LOGGER_NAME = "paddleocr_trt"
logger = logging.getLogger(LOGGER_NAME)

_said: set[tuple[str, ...]] = set()
_said_lock = threading.Lock()


def get_logger(child: str | None = None) -> logging.Logger:
    return logger.getChild(child) if child else logger


def warn_once(key: tuple[str, ...], message: str, *args: object) -> bool:
    """Log ``message`` at WARNING the first time ``key`` is seen; return whether it was logged."""
    with _said_lock:
        if key in _said:
            return False
        _said.add(key)
    logger.warning(message, *args)
    return True


def reset_warn_once() -> None:
    """Forget what was said (tests, and long-lived processes that re-create pipelines)."""
    with _said_lock:
        _said.clear()
