"""The parent's side of the paddle2onnx child (``export_worker``): start, wait, kill, report.

paddle and paddle2onnx can abort, segfault or hang; the child runs in its own process group tied
to this process (``childproc.parent_ties``), with a timeout, and writes the step it is in to a
status file first, so a crash or a kill is still one :class:`StepFailure` naming its step
(``transient`` when the kill came from outside: a retry may succeed).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ...childproc import parent_ties
from ...errors import summary_line
from ...log import get_logger
from ...model_types import ModelFiles
from ...settings import ENV_DISABLE
from .graph_checks import StepFailure

log = get_logger("onnx.convert")

STEP_TIMEOUT = "timeout"
STEP_WORKER = "worker"  # the child died before saying which step it was in

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

#: signals that come from outside (OOM killer, kill, Ctrl-C, logout), not from a bug in the model
EXTERNAL_SIGNALS = frozenset(
    {signal.SIGKILL.value, signal.SIGTERM.value, signal.SIGINT.value, signal.SIGHUP.value}
)


def run_export_child(
    files: ModelFiles, raw_path: Path, workdir: Path, timeout_s: float, opset: int
) -> list[str]:
    """Run the export child; return the repairs it applied to the Paddle program."""
    status_path = workdir / "status.json"
    request = {
        "program": str(files.program),
        "params": str(files.params),
        "format": files.format.value,
        "model_dir": str(files.model_dir),
        "output": str(raw_path),
        "workdir": str(workdir),
        "opset": opset,
        "status": str(status_path),
        "reference_input": str(workdir / "smoke_input.npy"),
        "reference_output": str(workdir / "reference.npz"),
    }
    request_path = workdir / "request.json"
    request_path.write_text(json.dumps(request), encoding="utf-8")
    env = {
        **os.environ,
        ENV_DISABLE: "1",  # the child must never try to activate TensorRT itself
        "TMPDIR": str(workdir),  # paddle/paddle2onnx scratch files die with the work dir
        "P2O_KEEP_TEMP_MODEL": "0",
        "GLOG_minloglevel": "2",  # glog's spelling; paddle's C++ INFO lines are noise here
    }
    command = [sys.executable, "-m", "paddleocr_trt.backend.onnx.export_worker", str(request_path)]
    log.debug("running %s (timeout %.3g s)", command, timeout_s)
    with parent_ties() as ties:  # the child dies with us, even on SIGKILL (childproc.py)
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**env, **ties.env},
            cwd=workdir,
            start_new_session=True,  # own process group: a timeout kills all it spawned
            pass_fds=ties.pass_fds,
        )
        ties.close_child_end()
        return _wait_worker(proc, status_path, timeout_s)


def _wait_worker(proc: subprocess.Popen[bytes], status_path: Path, timeout_s: float) -> list[str]:
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        _, stderr = proc.communicate()
        status = _read_status(status_path)
        during = f" during '{status['step']}'" if status.get("step") else ""
        raise StepFailure(
            STEP_TIMEOUT,
            f"paddle2onnx child process exceeded {timeout_s:g} s{during} and was killed",
            _stderr_tail(stderr),
            transient=True,
        ) from None
    except BaseException:
        # KeyboardInterrupt etc.: the child is in its own session and would outlive us.
        _kill_group(proc)
        proc.communicate()
        raise
    status = _read_status(status_path)
    if proc.returncode == 0 and status.get("step") == "done":
        return list(status.get("repairs") or [])
    step = status.get("step") or STEP_WORKER
    if status.get("error"):
        reason = summary_line(status["error"])
        details = f"{status['error']}\n{status.get('traceback', '')[-1500:]}".strip()
    else:
        reason = f"child process exited with code {proc.returncode} (crashed or killed)"
        details = ""
    killed = proc.returncode < 0 and -proc.returncode in EXTERNAL_SIGNALS
    raise StepFailure(step, reason, (details + _stderr_tail(stderr)).strip(), transient=killed)


def _stderr_tail(stderr: bytes | None) -> str:
    tail = _ANSI.sub("", (stderr or b"").decode("utf-8", "replace")).strip()[-2000:]
    return f"\n--- stderr tail ---\n{tail}" if tail else ""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _read_status(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
