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
from typing import Any

from .settings import ENV_LOG_LEVEL, SETTINGS

LOGGER_NAME = "paddleocr_trt"
PROGRESS_LOGGER_NAME = f"{LOGGER_NAME}.progress"
logger = logging.getLogger(LOGGER_NAME)

# -- progress bars on stderr (drawn by progress.py; kept here, below it, so log lines and Python
# warnings can clear them first) ------------------------------------------------------------

_active: list[Any] = []  # bars drawn on stderr right now (a line without its newline)
_active_lock = threading.Lock()
_plain_showwarning: Any = None


def before_log_line(stream: Any = None) -> None:
    """Clear the bars' line before a log record or warning is written to stderr, so the message
    starts on a line of its own instead of after the bar's text (the bar redraws itself)."""
    if stream is not None and stream is not sys.stderr:
        return
    with _active_lock:
        bars = list(_active)
    for bar in bars:
        try:
            bar.clear()
        except (OSError, ValueError):  # a closed stream: nothing to clear
            continue


def _showwarning(*args: Any, **kwargs: Any) -> None:
    before_log_line()
    _plain_showwarning(*args, **kwargs)


def register_bar(bar: Any) -> None:
    """Track a bar; while any is drawn, Python warnings clear it before printing."""
    global _plain_showwarning
    import warnings

    with _active_lock:
        _active.append(bar)
        if _plain_showwarning is None:
            _plain_showwarning = warnings.showwarning
            warnings.showwarning = _showwarning


def unregister_bar(bar: Any) -> None:
    global _plain_showwarning
    import warnings

    with _active_lock:
        if bar in _active:
            _active.remove(bar)
        if not _active and _plain_showwarning is not None:
            if warnings.showwarning is _showwarning:
                warnings.showwarning = _plain_showwarning
            _plain_showwarning = None


_said: set[tuple[str, ...]] = set()
_said_lock = threading.Lock()


#: formats of root handlers that libraries install on import, not the application: Paddle's
#: ``paddle.distributed.utils.log_utils.get_logger`` adds this one to the root logger when
#: ``paddle`` is imported (and PaddleX imports paddle), which used to switch our format mid-run
LIBRARY_ROOT_FORMATS = frozenset(
    {"[%(asctime)-15s] [%(levelname)8s] %(filename)s:%(lineno)s - %(message)s"}
)


def _library_made(handler: logging.Handler) -> bool:
    return getattr(handler.formatter, "_fmt", None) in LIBRARY_ROOT_FORMATS


def application_configured_root() -> bool:
    """True when the root logger has a handler that a library did not add on import."""
    return any(not _library_made(h) for h in logging.getLogger().handlers)


def _is_ours(record: logging.LogRecord) -> bool:
    return record.name == LOGGER_NAME or record.name.startswith(LOGGER_NAME + ".")


class _NotOursWhileWeSpeak(logging.Filter):
    """On a library-made root handler: drop our records while our own handler prints them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _is_ours(record) or application_configured_root()


_NOT_OURS = _NotOursWhileWeSpeak()


class _StderrUnlessConfigured(logging.StreamHandler):
    """stderr (looked up per record, so redirections apply) while the application has given
    the root logger no handler of its own. A handler Paddle adds on import does not count, and
    our records are kept off it, so the format stays ours whatever gets imported later."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        if application_configured_root():
            return
        for handler in logging.getLogger().handlers:
            if _NOT_OURS not in handler.filters:
                handler.addFilter(_NOT_OURS)
        self.setStream(sys.stderr)
        before_log_line(self.stream)
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
