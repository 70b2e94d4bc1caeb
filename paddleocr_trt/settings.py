"""Environment variables and defaults, read in one place so docs and code cannot drift."""

from __future__ import annotations

import os
from pathlib import Path

ENV_DISABLE = "PADDLEOCR_TRT_DISABLE"
ENV_CACHE_DIR = "PADDLEOCR_TRT_CACHE_DIR"
ENV_WORKSPACE_GB = "PADDLEOCR_TRT_WORKSPACE_GB"
ENV_LOG_LEVEL = "PADDLEOCR_TRT_LOG_LEVEL"  # read by log.py
ENV_BUILD_TIMEOUT_S = "PADDLEOCR_TRT_BUILD_TIMEOUT_S"

DEFAULT_WORKSPACE_GB = 4.0
#: one engine attempt (build + validation, in a child process) is killed after this long
DEFAULT_BUILD_TIMEOUT_S = 1800.0
#: "Accuracy retained" (task-level agreement with native Paddle) must reach this.
DEFAULT_MIN_AGREEMENT = 0.99

_TRUE = {"1", "true", "yes", "on"}


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


def workspace_gb(environ: dict[str, str] | None = None) -> float:
    env = os.environ if environ is None else environ
    raw = env.get(ENV_WORKSPACE_GB)
    if not raw:
        return DEFAULT_WORKSPACE_GB
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{ENV_WORKSPACE_GB}={raw!r} is not a number of GiB") from exc
    if value <= 0:
        raise ValueError(f"{ENV_WORKSPACE_GB}={raw!r} must be positive")
    return value


def build_timeout_s(environ: dict[str, str] | None = None) -> float:
    """``$PADDLEOCR_TRT_BUILD_TIMEOUT_S`` (seconds per engine attempt), else the default."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_BUILD_TIMEOUT_S)
    if not raw:
        return DEFAULT_BUILD_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{ENV_BUILD_TIMEOUT_S}={raw!r} is not a number of seconds") from exc
    if value <= 0:
        raise ValueError(f"{ENV_BUILD_TIMEOUT_S}={raw!r} must be positive")
    return value
