"""Which engines exist: one line each. A new engine is a new folder under ``engines/`` with an
``engine.py`` whose ``ENGINE`` implements :class:`~.contract.Engine`, plus its line here.

Engines are imported only when first asked for (they pull in numpy, onnx and their runtimes),
so this table holds names and labels, not objects; it imports nothing, and may be read from
anywhere (``settings`` takes the requestable names from it).
"""

from __future__ import annotations

import importlib
from typing import Any

#: name -> (label, module holding ``ENGINE``); requestable engines first, in default order
_ENGINES: dict[str, tuple[str, str]] = {
    "tensorrt": ("TensorRT", "paddleocr_trt.engines.tensorrt.engine"),
    "tensorrt-rtx": ("TensorRT-RTX", "paddleocr_trt.engines.tensorrt.rtx_engine"),
    "onnxruntime": ("ONNX Runtime", "paddleocr_trt.engines.onnxruntime.engine"),
    "paddle": ("native Paddle", "paddleocr_trt.engines.paddle.engine"),
}
#: what every model falls back to; not requestable (it is what "no engine" means)
NATIVE = "paddle"


def requestable() -> tuple[str, ...]:
    """The names ``trt_engine=`` and ``$PADDLEOCR_TRT_ENGINE`` accept, in registry order."""
    return tuple(name for name in _ENGINES if name != NATIVE)


def label(name: str) -> str:
    """The engine's name as the user reads it (the name itself if unknown)."""
    return _ENGINES[name][0] if name in _ENGINES else name


def engine(name: str) -> Any:  # -> contract.Engine (not imported here: see the docstring)
    """The engine called ``name`` (imported on first use); KeyError if there is none."""
    if name not in _ENGINES:
        raise KeyError(f"no engine named {name!r}; known: {', '.join(_ENGINES)}")
    return importlib.import_module(_ENGINES[name][1]).ENGINE
