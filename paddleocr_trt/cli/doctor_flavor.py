"""``doctor``: which TensorRT flavor fits this GPU and driver, and the line that installs it.

The choice is the TensorRT engine's (``engines/tensorrt/flavor_advice.py``, reached through the
registry); this module says it.
"""

from __future__ import annotations

from typing import Any

from ..engines import registry


def flavor_advice(cuda: dict[str, Any], builds: dict[str, Any]) -> dict[str, Any]:
    """{flavor, why, install} for the first GPU (or for a machine without one)."""
    return registry.engine("tensorrt").flavor_advice(cuda, builds)


def advice_lines(advice: dict[str, Any]) -> list[str]:
    return [
        f"best fit      {registry.label(advice['flavor'])}: {advice['why']}",
        f"  install:    {advice['install']}",
    ]
