"""Child-process isolation with real processes: segfault, abort, hang, exception, parent death.

The targets in ``paddleocr_trt.testing.child_targets`` end a real child the way TensorRT can;
the parent (this test process) must survive each and say how the child ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from paddleocr_trt.engines.tensorrt.attempts import AttemptJob, IsolatedEngineBuilder, run_attempts
from paddleocr_trt.engines.tensorrt.config import BuildSettings
from paddleocr_trt.errors import EngineBuildError
from paddleocr_trt.isolation import (
    KIND_CRASHED,
    KIND_ERROR,
    KIND_TIMEOUT,
    ChildProcessFailure,
    call_in_child,
    signal_name,
)

TARGETS = "paddleocr_trt.testing.child_targets"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes (its parent has not reaped it yet)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_result_comes_back_from_a_child() -> None:
    out = call_in_child(f"{TARGETS}:echo", {"a": [1, 2]}, timeout_s=60, what="echo")
    assert out["echo"] == {"a": [1, 2]} and out["pid"] != os.getpid()


@pytest.mark.parametrize("how", ["kill", "null-read"])
def test_segfault_is_a_crash_with_the_signal_name(how: str) -> None:
    with pytest.raises(ChildProcessFailure) as info:
        call_in_child(f"{TARGETS}:segfault", {"how": how}, timeout_s=60, what="segv job")
    failure = info.value
    assert failure.kind == KIND_CRASHED and failure.error_type == "Crash"
    assert failure.returncode == -signal.SIGSEGV
    assert "SIGSEGV" in str(failure) and "segv job" in str(failure)


def test_abort_is_a_crash_with_stderr_tail() -> None:
    with pytest.raises(ChildProcessFailure) as info:
        call_in_child(f"{TARGETS}:abort", {}, timeout_s=60, what="abort job")
    assert info.value.kind == KIND_CRASHED and "SIGABRT" in str(info.value)


def test_exception_keeps_its_type_and_message() -> None:
    with pytest.raises(ChildProcessFailure) as info:
        call_in_child(
            f"{TARGETS}:raise_runtime_error",
            {"message": "set_input_shape: dims out of profile"},
            timeout_s=60,
            what="raising job",
        )
    failure = info.value
    assert failure.kind == KIND_ERROR and failure.error_type == "RuntimeError"
    assert "set_input_shape: dims out of profile" in failure.reason
    assert "Traceback" in failure.stderr_tail  # the child's own traceback, for the bug report


def test_hang_is_killed_at_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    with pytest.raises(ChildProcessFailure) as info:
        call_in_child(
            f"{TARGETS}:hang", {"pid_file": str(pid_file)}, timeout_s=3, what="hanging job"
        )
    elapsed = time.monotonic() - started
    assert info.value.kind == KIND_TIMEOUT and "3 s timeout" in str(info.value)
    assert 3 <= elapsed < 30
    assert not _alive(int(pid_file.read_text()))


def test_signal_names() -> None:
    assert signal_name(-11) == "SIGSEGV" and signal_name(-6) == "SIGABRT"
    assert signal_name(0) is None and signal_name(3) is None


def test_child_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    """A parent that is SIGKILLed (no cleanup runs) must not leave its build child behind."""
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                from paddleocr_trt.isolation import call_in_child
                call_in_child("{TARGETS}:hang", {{"pid_file": {str(pid_file)!r}}},
                              timeout_s=600, what="orphan test")
                """
            ),
        ],
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )
    try:
        deadline = time.monotonic() + 60
        while not pid_file.is_file() or not pid_file.read_text():
            assert parent.poll() is None, "parent exited early"
            assert time.monotonic() < deadline, "child never started"
            time.sleep(0.1)
        child = int(pid_file.read_text())
        assert _alive(child)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the build child outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_real_isolated_builder_turns_a_missing_tensorrt_into_one_failed_attempt(
    tmp_path: Path,
) -> None:
    """The real builder's child (attempt_worker) fails here (no TensorRT libraries); the loop
    records each attempt's error with its type and goes on, and the parent is unharmed."""
    np.savez(tmp_path / "inputs.npz", np.zeros((1, 3, 32, 32), np.float32))

    def job_for(settings: BuildSettings, number: int) -> AttemptJob:
        return AttemptJob(
            onnx_path=tmp_path / "missing.onnx",
            plan_path=tmp_path / f"{settings.precision}-{number}.plan",
            settings=settings,
            profiles=[{"x": {"min": [1, 3, 32, 32], "opt": [1, 3, 32, 32], "max": [1, 3, 32, 32]}}],
            model_dir=tmp_path,
            model_type="detection",
            inputs_path=tmp_path / "inputs.npz",
            min_agreement=0.99,
            device_id=0,
            timing_cache_dir=None,
        )

    specs = [BuildSettings("fp32", 1 << 30), BuildSettings("fp32", 1 << 29)]
    with pytest.raises(EngineBuildError) as info:
        run_attempts(IsolatedEngineBuilder(timeout_s=120), specs, job_for, what="det")
    history = info.value.attempts
    assert [h["outcome"] for h in history] == ["error", "error"]
    assert all(h["error_type"] and h["error_type"] not in ("Crash", "Timeout") for h in history)


def test_child_progress_lines_reach_the_parents_stderr() -> None:
    """A user watching a first build sees the child's stages (build, validate) as they end."""
    program = textwrap.dedent(
        f"""
        from paddleocr_trt.isolation import call_in_child
        print(call_in_child("{TARGETS}:progress", {{"desc": "building the fp16 engine"}},
                            timeout_s=60, what="progress test"))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PADDLEOCR_TRT_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"
    assert "paddleocr_trt:   building the fp16 engine ..." in proc.stderr
    assert "paddleocr_trt:   building the fp16 engine: done in 0." in proc.stderr
