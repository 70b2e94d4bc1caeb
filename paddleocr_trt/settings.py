"""Environment variables and defaults, read in one place so docs and code cannot drift."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .engines.registry import requestable as requestable_engines
from .errors import PaddleOCRTRTError

ENV_DISABLE = "PADDLEOCR_TRT_DISABLE"
ENV_CACHE_DIR = "PADDLEOCR_TRT_CACHE_DIR"
ENV_WORKSPACE_GB = "PADDLEOCR_TRT_WORKSPACE_GB"
ENV_LOG_LEVEL = "PADDLEOCR_TRT_LOG_LEVEL"  # read by log.py
ENV_ENGINE = "PADDLEOCR_TRT_ENGINE"
ENV_CUDA_GRAPHS = "PADDLEOCR_TRT_CUDA_GRAPHS"
ENV_BUILD_TIMEOUT_S = "PADDLEOCR_TRT_BUILD_TIMEOUT_S"
ENV_PIPELINE = "PADDLEOCR_TRT_PIPELINE"
ENV_MODEL_SOURCE = "PADDLEOCR_TRT_MODEL_SOURCE"

#: Engine backends that can run a converted model, in the order a list may name them.
#: what trt_engine= / $PADDLEOCR_TRT_ENGINE accept: the registry's requestable engines
#: (``tensorrt-rtx`` is TensorRT for RTX GPUs, compute capability 8.0/8.6/8.9/12.x)
ENGINE_NAMES = requestable_engines()
#: plain ``use_tensorrt=True``: full TensorRT, else TensorRT-RTX where the GPU runs it
DEFAULT_ENGINES = ("tensorrt", "tensorrt-rtx")
_ENGINE_ALIASES = {"trt": "tensorrt", "ort": "onnxruntime", "tensorrtrtx": "tensorrt-rtx"}
_ENGINE_ALIASES |= {"trtrtx": "tensorrt-rtx", "rtx": "tensorrt-rtx"}

DEFAULT_WORKSPACE_GB = 4.0
#: one engine attempt (build + validation, in a child process) is killed after this long
DEFAULT_BUILD_TIMEOUT_S = 1800.0
#: "Accuracy retained" (task-level agreement with native Paddle) must reach this.
DEFAULT_MIN_AGREEMENT = 0.99

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(PaddleOCRTRTError, ValueError):
    """A setting (environment variable or argument) has a value this package cannot use."""


def is_disabled(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get(ENV_DISABLE, "").strip().lower() in _TRUE


def default_cache_dir(environ: dict[str, str] | None = None) -> Path:
    """``$PADDLEOCR_TRT_CACHE_DIR``, else ``$XDG_CACHE_HOME/paddleocr_trt``, else ~/.cache."""
    env = os.environ if environ is None else environ
    explicit = env.get(ENV_CACHE_DIR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "paddleocr_trt"


def check_workspace_gb(value: Any, source: str = "workspace_gb") -> float:
    """A workspace size in GiB: a finite number > 0 (an int or float, never a bool or str)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingsError(
            f"{source} must be a number of GiB, got {value!r} ({type(value).__name__})"
        )
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{source} must be a positive, finite number of GiB, got {value!r}")
    return float(value)


def workspace_gb(environ: dict[str, str] | None = None) -> float:
    """``$PADDLEOCR_TRT_WORKSPACE_GB`` (checked), else the default."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_WORKSPACE_GB)
    if raw is None or not raw.strip():
        return DEFAULT_WORKSPACE_GB
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{ENV_WORKSPACE_GB}={raw!r} is not a number of GiB") from None
    return check_workspace_gb(value, ENV_WORKSPACE_GB)


def validate_settings(environ: dict[str, str] | None = None) -> None:
    """Check every environment setting once, up front; SettingsError names the first bad one."""
    env = os.environ if environ is None else environ
    workspace_gb(env)
    build_timeout_s(env)
    model_source(env)
    raw_engines = env.get(ENV_ENGINE, "").strip()
    if raw_engines:
        try:
            parse_engines(raw_engines, source=ENV_ENGINE)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
    cache_dir = default_cache_dir(env)
    if os.path.lexists(cache_dir) and not cache_dir.is_dir():
        raise SettingsError(f"cache directory {cache_dir} exists and is not a directory")


def parse_engines(
    value: str | list[str] | tuple[str, ...], *, source: str = "engine"
) -> tuple[str, ...]:
    """``"tensorrt,onnxruntime"`` or a list -> ordered, de-duplicated engine names.

    Each engine is tried in order, then native Paddle; an unknown name is a settings error,
    raised up front with the accepted names rather than discovered at the first model.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        name = str(item).strip().lower().replace("-", "").replace("_", "")
        name = _ENGINE_ALIASES.get(name, name)
        if not name:
            continue
        if name not in ENGINE_NAMES:
            raise ValueError(
                f"{source}={value!r}: unknown engine {str(item).strip()!r}; "
                f"use one or more of {', '.join(ENGINE_NAMES)} (comma-separated, tried in order)"
            )
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"{source}={value!r} names no engine; use {', '.join(ENGINE_NAMES)}")
    return tuple(names)


def engines(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The engines ``$PADDLEOCR_TRT_ENGINE`` asks for, else the default (TensorRT only)."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_ENGINE, "").strip()
    return parse_engines(raw, source=ENV_ENGINE) if raw else DEFAULT_ENGINES


def engines_given(environ: dict[str, str] | None = None) -> bool:
    """Whether ``$PADDLEOCR_TRT_ENGINE`` names the engines (then that list is strict: no
    automatic ONNX Runtime step after it)."""
    env = os.environ if environ is None else environ
    return bool(env.get(ENV_ENGINE, "").strip())


def cuda_graphs_enabled(environ: dict[str, str] | None = None) -> bool:
    """``$PADDLEOCR_TRT_CUDA_GRAPHS``: replay CUDA graphs in the drop-in hook (default off)."""
    env = os.environ if environ is None else environ
    return env.get(ENV_CUDA_GRAPHS, "").strip().lower() in _TRUE


def build_timeout_s(environ: dict[str, str] | None = None) -> float:
    """``$PADDLEOCR_TRT_BUILD_TIMEOUT_S`` (seconds per engine attempt), else the default."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_BUILD_TIMEOUT_S)
    if not raw:
        return DEFAULT_BUILD_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{ENV_BUILD_TIMEOUT_S}={raw!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise SettingsError(f"{ENV_BUILD_TIMEOUT_S}={raw!r} must be a positive number of seconds")
    return value


def pipeline_enabled(environ: dict[str, str] | None = None) -> bool:
    """``$PADDLEOCR_TRT_PIPELINE``: the pipelined multi-image path (default on; ``0`` = stock).

    Read at every ``predict`` call, so it can be flipped between calls.
    """
    env = os.environ if environ is None else environ
    return env.get(ENV_PIPELINE, "").strip().lower() not in _FALSE


def model_source(environ: dict[str, str] | None = None) -> str:
    """Which program of a model dir holding both a Paddle program and ``inference.onnx`` is the
    source: ``auto`` (default: Paddle where it is installed, else ONNX), ``paddle`` or ``onnx``."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_MODEL_SOURCE, "").strip().lower() or "auto"
    if raw not in ("auto", "paddle", "onnx"):
        raise SettingsError(f"{ENV_MODEL_SOURCE}={raw!r}: use auto, paddle or onnx")
    return raw
