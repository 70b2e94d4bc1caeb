"""The package's one logger, plus "say it once" for fallback reasons.

A fallback reason repeated for every image or every model instance is noise; users asked for one
clear line per reason, so :func:`warn_once` de-duplicates on a key the caller chooses.

Visibility: a first engine build takes minutes, so progress must be seen without any logging
set-up. The package logger gets a stderr handler that speaks only while the application has
configured no root handler (otherwise records propagate to the application's handlers and
nothing is printed twice). ``PADDLEOCR_TRT_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR or a number)
sets the package's level; unset, warnings and the ``paddleocr_trt.progress`` lines are shown.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from .settings import ENV_LOG_LEVEL, SETTINGS

LOGGER_NAME = "paddleocr_trt"
PROGRESS_LOGGER_NAME = f"{LOGGER_NAME}.progress"
logger = logging.getLogger(LOGGER_NAME)

_said: set[tuple[str, ...]] = set()
_said_lock = threading.Lock()


class _StderrUnlessConfigured(logging.StreamHandler):
    """stderr (looked up per record, so redirections apply) while the root has no handler."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return
        self.setStream(sys.stderr)
        super().emit(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "paddleocr_trt: "
        if record.levelno >= logging.WARNING:
            prefix += f"{record.levelname}: "
        return prefix + super().format(record)


def parse_level(raw: str | None) -> int | None:
    """``"info"`` / ``"20"`` -> 20; None for empty; SettingsError (a ValueError) otherwise."""
    return SETTINGS[ENV_LOG_LEVEL].read({} if raw is None else {ENV_LOG_LEVEL: raw})


_applied_level: int | None = None  # the package logger level this module last set


def configure_from_env(environ: dict[str, str] | None = None) -> None:
    """Install the stderr handler once and apply ``PADDLEOCR_TRT_LOG_LEVEL``.

    Unset, a level the application gave the ``paddleocr_trt`` logger itself is kept (an
    application may configure it before this package is first imported)."""
    global _applied_level
    env = os.environ if environ is None else environ
    if not any(isinstance(h, _StderrUnlessConfigured) for h in logger.handlers):
        handler = _StderrUnlessConfigured()
        handler.setFormatter(_Formatter("%(message)s"))
        logger.addHandler(handler)
    progress = logging.getLogger(PROGRESS_LOGGER_NAME)
    try:
        level = parse_level(env.get(ENV_LOG_LEVEL))
    except ValueError as exc:
        logger.warning("%s; using the default levels", exc)
        level = None
    if level is None:
        if logger.level == (_applied_level or logging.NOTSET):
            logger.setLevel(logging.NOTSET)  # the application's root level decides, as usual
            _applied_level = logging.NOTSET
        progress.setLevel(logging.INFO)  # but build progress is always shown
    else:
        logger.setLevel(level)
        _applied_level = level
        progress.setLevel(logging.NOTSET)


def get_logger(child: str | None = None) -> logging.Logger:
    return logger.getChild(child) if child else logger


def progress_logger() -> logging.Logger:
    return logging.getLogger(PROGRESS_LOGGER_NAME)


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


configure_from_env()
