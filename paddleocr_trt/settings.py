"""Environment variables and defaults, read in one place so docs and code cannot drift.

Every ``PADDLEOCR_TRT_*`` setting is in :data:`SETTINGS` with its parser, its bounds and a valid
example. Each entry point checks all of them once, up front, with :func:`validate_settings`
and reacts in its own way to the one :class:`SettingsError` (a ``ValueError``) it may raise:

* the CLI: one ``error:`` line, exit 2;
* ``TensorRTOptimizer``: the error is raised from its constructor;
* the drop-in (``PaddleOCR(..., use_tensorrt=True)``): one warning, and that pipeline runs
  natively, exactly as plain PaddleOCR (an environment variable has no call site to raise at;
  the user's program must not break). Explicit keyword arguments (``trt_engine=``,
  ``trt_pipeline=``) raise ``ValueError`` there, like PaddleOCR's own argument errors.

The message always names the setting, says why the value is refused, and gives a valid example.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engines.registry import requestable as requestable_engines
from .errors import PaddleOCRTRTError

ENV_DISABLE = "PADDLEOCR_TRT_DISABLE"
ENV_CACHE_DIR = "PADDLEOCR_TRT_CACHE_DIR"
ENV_WORKSPACE_GB = "PADDLEOCR_TRT_WORKSPACE_GB"
ENV_LOG_LEVEL = "PADDLEOCR_TRT_LOG_LEVEL"  # applied by log.py
ENV_ENGINE = "PADDLEOCR_TRT_ENGINE"
ENV_CUDA_GRAPHS = "PADDLEOCR_TRT_CUDA_GRAPHS"
ENV_BUILD_TIMEOUT_S = "PADDLEOCR_TRT_BUILD_TIMEOUT_S"
ENV_PIPELINE = "PADDLEOCR_TRT_PIPELINE"
ENV_MODELS_DIR = "PADDLEOCR_TRT_MODELS_DIR"  # used by testing/models.py (demo and tests)
ENV_MODEL_SOURCE = "PADDLEOCR_TRT_MODEL_SOURCE"
#: which program of a model dir holding both a Paddle program and ``inference.onnx`` is the source
MODEL_SOURCES = ("auto", "paddle", "onnx")

#: Engine backends that can run a converted model, in the order a list may name them.
#: what trt_engine= / $PADDLEOCR_TRT_ENGINE accept: the registry's requestable engines
#: (``tensorrt-rtx`` is TensorRT for RTX GPUs, compute capability 8.0/8.6/8.9/12.x)
ENGINE_NAMES = requestable_engines()
#: plain ``use_tensorrt=True``: full TensorRT, else TensorRT-RTX where the GPU runs it
DEFAULT_ENGINES = ("tensorrt", "tensorrt-rtx")
_ENGINE_ALIASES = {"trt": "tensorrt", "ort": "onnxruntime", "tensorrtrtx": "tensorrt-rtx"}
_ENGINE_ALIASES |= {"trtrtx": "tensorrt-rtx", "rtx": "tensorrt-rtx"}

DEFAULT_WORKSPACE_GB = 4.0
#: no GPU is known where settings are read: a workspace above this is a typo, not a plan
MAX_WORKSPACE_GB = 1024.0
#: one engine attempt (build + validation, in a child process) is killed after this long
DEFAULT_BUILD_TIMEOUT_S = 1800.0
#: a week: longer is a typo (and huge values overflow the OS's timeouts)
MAX_BUILD_TIMEOUT_S = 7 * 24 * 3600.0
#: "Accuracy retained" (task-level agreement with native Paddle) must reach this.
DEFAULT_MIN_AGREEMENT = 0.99

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: kernel file systems: nothing can be cached there (mkdir answers ENOENT or EPERM)
_VIRTUAL_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))

Environ = Mapping[str, str]


class SettingsError(PaddleOCRTRTError, ValueError):
    """A setting (environment variable or argument) has a value this package cannot use."""


@dataclass(frozen=True)
class Setting:
    """One documented environment variable: how it is read and what a good value looks like."""

    name: str
    example: str
    parse: Callable[[str], Any]  # raw text (stripped, non-empty) -> value; ValueError: why not
    default: Any

    def read(self, env: Environ | None = None) -> Any:
        """The value from ``env`` (``os.environ``), the default when unset or empty."""
        raw = (os.environ if env is None else env).get(self.name)
        if raw is None or not raw.strip():
            return self.default
        try:
            return self.parse(raw.strip())
        except ValueError as exc:
            raise SettingsError(f"{self.name}={raw!r}: {exc}; e.g. {self.example}") from None


def _flag(raw: str) -> bool:
    text = raw.lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a yes/no value (use 1/0, true/false, yes/no or on/off)")


def _number(raw: str, unit: str, most: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"not a number of {unit}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a positive, finite number of {unit}")
    if value > most:
        raise ValueError(f"more than {most:g} {unit}")
    return value


def check_workspace_gb(value: Any, source: str = "workspace_gb") -> float:
    """A workspace size in GiB: a finite number in (0, MAX_WORKSPACE_GB], never a bool or str."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingsError(
            f"{source} must be a number of GiB, got {value!r} ({type(value).__name__}); "
            f"e.g. {source}={DEFAULT_WORKSPACE_GB:g}"
        )
    if not math.isfinite(value) or not 0 < value <= MAX_WORKSPACE_GB:
        raise SettingsError(
            f"{source} must be a positive, finite number of GiB up to {MAX_WORKSPACE_GB:g}, "
            f"got {value!r}; e.g. {source}={DEFAULT_WORKSPACE_GB:g}"
        )
    return float(value)


def check_workspace_fits(workspace_bytes: int, gpu_bytes: int, gpu_name: str) -> None:
    """The builder workspace must fit in the GPU it is built for (known only at build time)."""
    if gpu_bytes > 0 and workspace_bytes > gpu_bytes:
        raise SettingsError(
            f"the TensorRT workspace ({workspace_bytes / (1 << 30):g} GiB, {ENV_WORKSPACE_GB} "
            f"or workspace_gb) is more than the memory of {gpu_name} "
            f"({gpu_bytes / (1 << 30):.1f} GiB); e.g. {ENV_WORKSPACE_GB}={DEFAULT_WORKSPACE_GB:g}"
        )


def check_build_timeout_s(value: Any, source: str = "build_timeout_s") -> float:
    """Seconds per engine attempt: a finite number in (0, MAX_BUILD_TIMEOUT_S]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingsError(
            f"{source} must be a number of seconds, got {value!r}; e.g. {source}=1800"
        )
    if not math.isfinite(value) or not 0 < value <= MAX_BUILD_TIMEOUT_S:
        raise SettingsError(
            f"{source} must be a positive, finite number of seconds up to "
            f"{MAX_BUILD_TIMEOUT_S:g}, got {value!r}; e.g. {source}=1800"
        )
    return float(value)


def _engine_names(value: Any) -> tuple[str, ...]:
    """The names in ``value`` (a comma-separated string or a list of strings); ValueError: why
    not."""
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError(f"use an engine name or a list of them, not {type(value).__name__}")
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"engine names are strings, got {item!r}")
        name = item.strip().lower().replace("-", "").replace("_", "")
        name = _ENGINE_ALIASES.get(name, name)
        if not name:
            continue
        if name not in ENGINE_NAMES:
            raise ValueError(
                f"unknown engine {item.strip()!r}; use one or more of "
                f"{', '.join(ENGINE_NAMES)} (comma-separated, tried in order)"
            )
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"names no engine; use {', '.join(ENGINE_NAMES)}")
    return tuple(names)


def parse_engines(value: Any, *, source: str = "engine") -> tuple[str, ...]:
    """``"tensorrt,onnxruntime"`` or a list -> ordered, de-duplicated engine names.

    Each engine is tried in order, then native Paddle; an unknown name (or a value that is not
    a string or a list of strings) is a SettingsError, raised up front with the accepted names.
    """
    try:
        return _engine_names(value)
    except ValueError as exc:
        raise SettingsError(
            f'{source}={value!r}: {exc}; e.g. {source}="onnxruntime" or "tensorrt,onnxruntime"'
        ) from None


def _directory(raw: str | os.PathLike[str]) -> Path:
    """A directory this package may create or use: not a file, not on a kernel file system."""
    text = os.fspath(raw)
    if "\0" in text:
        raise ValueError("a path cannot hold a NUL character")
    path = Path(text).expanduser()
    absolute = Path(os.path.abspath(path))
    for root in _VIRTUAL_ROOTS:
        if absolute == root or root in absolute.parents:
            raise ValueError(f"{root} is a kernel file system where nothing can be stored")
    if os.path.lexists(path) and not path.is_dir():
        raise ValueError("exists and is not a directory")
    return path


def check_directory(raw: str | os.PathLike[str], source: str) -> Path:
    """:func:`_directory` for an argument (``--cache-dir``, ``cache_dir=``)."""
    try:
        return _directory(raw)
    except ValueError as exc:
        raise SettingsError(
            f"{source}={os.fspath(raw)!r}: {exc}; e.g. {source}=~/.cache/paddleocr_trt"
        ) from None


def _log_level(raw: str) -> int:
    text = raw.upper()
    if text.lstrip("-").isdigit():
        level = int(text)
        if not 0 <= level <= 50:
            raise ValueError("a numeric level is 0..50")
        return level
    if text == "WARN":
        text = "WARNING"
    if text not in _LOG_LEVELS:
        raise ValueError(f"not a log level ({', '.join(_LOG_LEVELS)} or 0..50)")
    return int(getattr(logging, text))


def _model_source(raw: str) -> str:
    text = raw.lower()
    if text not in MODEL_SOURCES:
        raise ValueError(f"use {', '.join(MODEL_SOURCES[:-1])} or {MODEL_SOURCES[-1]}")
    return text


#: every documented setting, in the README's order
SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(ENV_DISABLE, f"{ENV_DISABLE}=1", _flag, False),
        Setting(ENV_CACHE_DIR, f"{ENV_CACHE_DIR}=~/.cache/paddleocr_trt", _directory, None),
        Setting(ENV_ENGINE, f"{ENV_ENGINE}=tensorrt,onnxruntime", _engine_names, DEFAULT_ENGINES),
        Setting(
            ENV_WORKSPACE_GB,
            f"{ENV_WORKSPACE_GB}={DEFAULT_WORKSPACE_GB:g}",
            lambda raw: _number(raw, "GiB", MAX_WORKSPACE_GB),
            DEFAULT_WORKSPACE_GB,
        ),
        Setting(
            ENV_BUILD_TIMEOUT_S,
            f"{ENV_BUILD_TIMEOUT_S}=1800",
            lambda raw: _number(raw, "seconds", MAX_BUILD_TIMEOUT_S),
            DEFAULT_BUILD_TIMEOUT_S,
        ),
        Setting(ENV_PIPELINE, f"{ENV_PIPELINE}=0", _flag, True),
        Setting(ENV_CUDA_GRAPHS, f"{ENV_CUDA_GRAPHS}=1", _flag, False),
        Setting(ENV_LOG_LEVEL, f"{ENV_LOG_LEVEL}=WARNING", _log_level, None),
        Setting(ENV_MODELS_DIR, f"{ENV_MODELS_DIR}=~/paddleocr_models", _directory, None),
        Setting(ENV_MODEL_SOURCE, f"{ENV_MODEL_SOURCE}=onnx", _model_source, "auto"),
    )
}


def validate_settings(environ: Environ | None = None) -> None:
    """Check every setting once, up front; SettingsError names the first bad one."""
    for setting in SETTINGS.values():
        setting.read(environ)


def settings_problem(environ: Environ | None = None) -> str | None:
    """:func:`validate_settings` as a message (None: every setting is good)."""
    try:
        validate_settings(environ)
    except SettingsError as exc:
        return str(exc)
    return None


def is_disabled(environ: Environ | None = None) -> bool:
    """``$PADDLEOCR_TRT_DISABLE`` (SettingsError for a value that is not yes/no)."""
    return bool(SETTINGS[ENV_DISABLE].read(environ))


def default_cache_dir(environ: Environ | None = None) -> Path:
    """``$PADDLEOCR_TRT_CACHE_DIR``, else ``$XDG_CACHE_HOME/paddleocr_trt``, else ~/.cache."""
    env = os.environ if environ is None else environ
    explicit = SETTINGS[ENV_CACHE_DIR].read(env)
    if explicit is not None:
        return explicit
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "paddleocr_trt"


def workspace_gb(environ: Environ | None = None) -> float:
    """``$PADDLEOCR_TRT_WORKSPACE_GB`` (checked), else the default."""
    return float(SETTINGS[ENV_WORKSPACE_GB].read(environ))


def engines(environ: Environ | None = None) -> tuple[str, ...]:
    """The engines ``$PADDLEOCR_TRT_ENGINE`` asks for, else the default (TensorRT, then
    TensorRT-RTX)."""
    return tuple(SETTINGS[ENV_ENGINE].read(environ))


def engines_given(environ: Environ | None = None) -> bool:
    """Whether ``$PADDLEOCR_TRT_ENGINE`` names the engines (then that list is strict: no
    automatic ONNX Runtime step after it)."""
    env = os.environ if environ is None else environ
    return bool(env.get(ENV_ENGINE, "").strip())


def cuda_graphs_enabled(environ: Environ | None = None) -> bool:
    """``$PADDLEOCR_TRT_CUDA_GRAPHS``: replay CUDA graphs in the drop-in hook (default off)."""
    return bool(SETTINGS[ENV_CUDA_GRAPHS].read(environ))


def build_timeout_s(environ: Environ | None = None) -> float:
    """``$PADDLEOCR_TRT_BUILD_TIMEOUT_S`` (seconds per engine attempt), else the default."""
    return float(SETTINGS[ENV_BUILD_TIMEOUT_S].read(environ))


def pipeline_enabled(environ: Environ | None = None) -> bool:
    """``$PADDLEOCR_TRT_PIPELINE``: the pipelined multi-image path (default on; ``0`` = stock).

    Read at every ``predict`` call, so it can be flipped between calls.
    """
    return bool(SETTINGS[ENV_PIPELINE].read(environ))


def log_level(environ: Environ | None = None) -> int | None:
    """``$PADDLEOCR_TRT_LOG_LEVEL`` as a ``logging`` level (None: unset)."""
    return SETTINGS[ENV_LOG_LEVEL].read(environ)


def models_dir(environ: Environ | None = None) -> Path | None:
    """``$PADDLEOCR_TRT_MODELS_DIR`` (None: unset)."""
    return SETTINGS[ENV_MODELS_DIR].read(environ)


def model_source(environ: Environ | None = None) -> str:
    """Which program of a model dir holding both a Paddle program and ``inference.onnx`` is the
    source: ``auto`` (default: Paddle where it is installed, else ONNX), ``paddle`` or ``onnx``."""
    return str(SETTINGS[ENV_MODEL_SOURCE].read(environ))
