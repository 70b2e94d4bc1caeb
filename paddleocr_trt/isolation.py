"""Run one function in a child process, so that an abort, segfault or hang cannot take us down.

TensorRT (like paddle, see ``backend/onnx/export_worker.py``) can ``abort()`` or segfault inside
its C++ code, and a build can hang; in the user's process either would end their program. So
an engine build + validation runs here: ``python -m paddleocr_trt.isolation <request.json>``
imports ``module:function``, calls it with a JSON payload and writes its JSON result. The parent
turns every way the child can end into either that result or a :class:`ChildProcessFailure`
naming how it ended (exception type and message, signal name, exit code, timeout) with the
tail of the child's stderr.

The child dies with its parent (``childproc.die_with_parent``) and runs in its own process group,
which a timeout kills as a whole.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from .errors import PaddleOCRTRTError
from .log import get_logger
from .settings import ENV_DISABLE

log = get_logger("isolation")

STDERR_TAIL_CHARS = 2000
#: the child finds the parent's stderr (for progress lines) under this fd number
ENV_PROGRESS_FD = "PADDLEOCR_TRT_PROGRESS_FD"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

#: how the child ended, in ``ChildProcessFailure.kind``
KIND_ERROR, KIND_CRASHED, KIND_TIMEOUT = "error", "crashed", "timeout"


class ChildProcessFailure(PaddleOCRTRTError):
    """The isolated call did not return a result; ``kind`` and ``reason`` say how it ended."""

    def __init__(
        self,
        kind: str,
        reason: str,
        *,
        error_type: str,
        returncode: int | None = None,
        stderr_tail: str = "",
    ) -> None:
        message = reason + (f"\n--- child stderr (tail) ---\n{stderr_tail}" if stderr_tail else "")
        super().__init__(message)
        self.kind = kind
        self.reason = reason
        #: the child's exception type (``EngineBuildError``, ``RuntimeError``...), or
        #: ``"Crash"`` / ``"Timeout"``
        self.error_type = error_type
        self.returncode = returncode
        self.stderr_tail = stderr_tail


def signal_name(returncode: int) -> str | None:
    """``-11`` -> ``"SIGSEGV"``; None for a normal exit code."""
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def call_in_child(
    target: str,
    payload: dict[str, Any],
    *,
    timeout_s: float,
    what: str,
    workdir: Path | None = None,
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> Any:
    """Call ``target`` (``"package.module:function"``) with ``payload`` in a child process.

    Returns the function's (JSON) result. Raises :class:`ChildProcessFailure` when it raised,
    crashed (signal or non-zero exit without a result) or ran past ``timeout_s`` (its process
    group is then killed). ``what`` names the job in messages. ``pass_fds``: descriptors the
    child inherits under the same numbers (e.g. a cache directory the parent walked to, so the
    child never opens it by path).
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    owned = workdir is None
    work = Path(tempfile.mkdtemp(prefix="paddleocr-trt-child-")) if owned else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    request = work / "request.json"
    result_path = work / "result.json"
    stderr_path = work / "stderr.txt"
    result_path.unlink(missing_ok=True)
    request.write_text(
        json.dumps(
            {
                "target": target,
                "payload": payload,
                "result": str(result_path),
                "parent_pid": os.getpid(),
            }
        ),
        encoding="utf-8",
    )
    child_env = {**os.environ, ENV_DISABLE: "1", **(env or {})}
    command = [sys.executable, "-m", "paddleocr_trt.isolation", str(request)]
    progress_fd = _progress_fd()
    if progress_fd is not None:
        child_env[ENV_PROGRESS_FD] = str(progress_fd)
    try:
        with open(stderr_path, "wb") as stderr:
            # The parent-death signal fires when the *thread* that forked the child exits; that
            # thread waits here for the child, so in practice it fires when this process dies.
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                env=child_env,
                cwd=work,
                start_new_session=True,
                pass_fds=(*pass_fds, *(() if progress_fd is None else (progress_fd,))),
            )
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.wait()
                raise ChildProcessFailure(
                    KIND_TIMEOUT,
                    f"{what} ran past its {timeout_s:g} s timeout and was killed",
                    error_type="Timeout",
                    returncode=proc.returncode,
                    stderr_tail=_tail(stderr_path),
                ) from None
            except BaseException:
                _kill_group(proc)  # KeyboardInterrupt: the child is in its own session
                proc.wait()
                raise
        return _outcome(what, proc.returncode, result_path, stderr_path)
    finally:
        if progress_fd is not None:
            os.close(progress_fd)
        if owned:
            shutil.rmtree(work, ignore_errors=True)


def _outcome(what: str, returncode: int, result_path: Path, stderr_path: Path) -> Any:
    try:
        result = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        result = None
    if returncode == 0 and isinstance(result, dict) and result.get("ok"):
        return result.get("result")
    tail = _tail(stderr_path)
    if isinstance(result, dict) and result.get("ok") is False:
        raise ChildProcessFailure(
            KIND_ERROR,
            f"{what} failed: {result.get('error_type')}: {result.get('error')}",
            error_type=str(result.get("error_type")),
            returncode=returncode,
            stderr_tail=tail,
        )
    sig = signal_name(returncode)
    how = f"was killed by {sig}" if sig else f"exited with code {returncode} and no result"
    raise ChildProcessFailure(
        KIND_CRASHED,
        f"{what}: the child process {how} (a crash inside native code)",
        error_type="Crash",
        returncode=returncode,
        stderr_tail=tail,
    )


def _progress_fd() -> int | None:
    """A duplicate of our stderr for the child's progress lines (None: stderr has no fd, e.g.
    in a notebook; the lines then stay in the child's captured stderr)."""
    try:
        return os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return None


def _progress_to_parent() -> None:
    """Child side: send ``paddleocr_trt.progress`` lines to the parent's stderr."""
    raw = os.environ.pop(ENV_PROGRESS_FD, "")
    if not raw.isdigit():
        return
    import logging

    from .log import progress_logger

    try:
        stream = os.fdopen(int(raw), "w", buffering=1, encoding="utf-8", errors="replace")
    except OSError:
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("paddleocr_trt:   %(message)s"))
    plog = progress_logger()
    plog.addHandler(handler)
    plog.propagate = False


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 4 * STDERR_TAIL_CHARS))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return _ANSI.sub("", text).strip()[-STDERR_TAIL_CHARS:]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


# -- the child side -----------------------------------------------------------------------------


def _write_result(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
    tmp.replace(path)


def child_main(argv: list[str]) -> int:
    request = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    from .childproc import die_with_parent

    die_with_parent(int(request["parent_pid"]))
    _progress_to_parent()
    result_path = Path(request["result"])
    try:
        module_name, _, func_name = str(request["target"]).partition(":")
        func = getattr(importlib.import_module(module_name), func_name)
        result = func(request["payload"])
    except BaseException as exc:
        _write_result(
            result_path,
            {
                "ok": False,
                "error_type": type(exc).__name__,
                "error": str(exc),
                "traceback": traceback.format_exc()[-4000:],
            },
        )
        traceback.print_exc()
        return 2
    _write_result(result_path, {"ok": True, "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv))
