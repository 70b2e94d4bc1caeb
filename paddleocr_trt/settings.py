"""Environment variables and defaults, read in one place so docs and code cannot drift."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .errors import PaddleOCRTRTError

ENV_DISABLE = "PADDLEOCR_TRT_DISABLE"
ENV_CACHE_DIR = "PADDLEOCR_TRT_CACHE_DIR"
ENV_WORKSPACE_GB = "PADDLEOCR_TRT_WORKSPACE_GB"
ENV_LOG_LEVEL = "PADDLEOCR_TRT_LOG_LEVEL"

DEFAULT_WORKSPACE_GB = 4.0
#: "Accuracy retained" (task-level agreement with native Paddle) must reach this.
DEFAULT_MIN_AGREEMENT = 0.99

_TRUE = {"1", "true", "yes", "on"}


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
    cache_dir = default_cache_dir(env)
    if os.path.lexists(cache_dir) and not cache_dir.is_dir():
        raise SettingsError(f"cache directory {cache_dir} exists and is not a directory")
