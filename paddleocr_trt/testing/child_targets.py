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


def build_and_validate_on_onnxruntime(payload: dict[str, Any]) -> dict[str, Any]:
    """The engine attempt worker with ONNX Runtime standing in for TensorRT.

    Test double for the two TensorRT pieces only (the "build" copies the ONNX file, the
    "engine" is an ONNX Runtime session); the payload handling, the native Paddle reference,
    the comparison and the report the parent reads back are the real worker's.
    """
    import shutil

    from ..engines.onnxruntime.runner import OnnxRuntimeRunner
    from ..engines.tensorrt import attempt_worker, builder, runner

    def build_engine_stand_in(onnx_path, out_path, settings, profiles, **_kwargs):
        shutil.copyfile(onnx_path, out_path)
        return builder.BuildResult(
            plan_path=Path(out_path),
            seconds=0.0,
            plan_bytes=Path(out_path).stat().st_size,
            precision=settings.precision,
            pinned_layers=(),
            workspace_bytes=settings.workspace_bytes,
            attempts=1,
            tensorrt_version="onnxruntime stand-in (not TensorRT)",
            timing_cache_path=None,
            onnx_path=Path(onnx_path),
        )

    class OnnxRuntimeAsEngine(OnnxRuntimeRunner):
        def __init__(self, plan: Any, name: str = "", device_id: int = 0, **_kw: Any) -> None:
            super().__init__(plan, name=f"onnxruntime stand-in:{name}")

    builder.build_engine = build_engine_stand_in  # type: ignore[assignment]
    runner.TensorRTRunner = OnnxRuntimeAsEngine  # type: ignore[misc]
    return attempt_worker.build_and_validate(payload)
