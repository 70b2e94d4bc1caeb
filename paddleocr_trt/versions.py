"""Installed distribution versions: one lookup for compat checks, cache keys and ``doctor``.

Several packages exist under two names (``paddlepaddle`` / ``paddlepaddle-gpu``,
``onnxruntime`` / ``onnxruntime-gpu``), so callers pass the names in the order they prefer.
"""

from __future__ import annotations

from importlib import metadata


def installed(*distributions: str) -> tuple[str, str] | None:
    """``(name, version)`` of the first of ``distributions`` that is installed, else None."""
    for dist in distributions:
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def version_of(*distributions: str) -> str | None:
    found = installed(*distributions)
    return found[1] if found else None
