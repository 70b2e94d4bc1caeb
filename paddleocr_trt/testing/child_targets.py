"""Functions for ``isolation.call_in_child`` that end the child in each way a native library can.

Test material only: they let the tests drive a *real* child process into a segfault, a hang, an
exception and a normal return, without TensorRT.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any


def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return {"echo": payload, "pid": os.getpid()}


def segfault(payload: dict[str, Any]) -> None:
    if payload.get("how") == "null-read":
        import ctypes

        ctypes.string_at(0)  # a real invalid read: SIGSEGV from the kernel
    os.kill(os.getpid(), signal.SIGSEGV)


def abort(payload: dict[str, Any]) -> None:
    os.abort()  # what a C++ assertion / std::terminate does


def raise_runtime_error(payload: dict[str, Any]) -> None:
    raise RuntimeError(payload.get("message", "boom"))


def hang(payload: dict[str, Any]) -> None:
    """Write our pid (so a test can watch us) and sleep far past any timeout."""
    if payload.get("pid_file"):
        Path(payload["pid_file"]).write_text(str(os.getpid()), encoding="utf-8")
    time.sleep(float(payload.get("seconds", 3600)))


def progress(payload: dict[str, Any]) -> str:
    """Report one stage, as the engine attempt worker does."""
    from ..progress import stage

    with stage(payload.get("desc", "child step")):
        time.sleep(0.05)
    return "ok"
