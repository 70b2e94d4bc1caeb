"""Build progress is visible on stderr without any logging set-up; PADDLEOCR_TRT_LOG_LEVEL rules.

Each case runs a real interpreter so that the logging state is the one a user's program starts
with (pytest installs its own root handlers in this process).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from paddleocr_trt import TensorRTOptimizer

PROGRAM = textwrap.dedent(
    """
    import logging, sys, time
    if "--basic-config" in sys.argv:
        logging.basicConfig(level=logging.INFO, format="APP %(name)s %(message)s")
    from paddleocr_trt.log import get_logger
    from paddleocr_trt.progress import stage
    with stage("building fp16 engine"):
        time.sleep(0.05)
    get_logger("pipeline").info("an ordinary info line")
    get_logger("pipeline").warning("a warning line")
    print("stdout stays clean")
    """
)


def _run(*args: str, level: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PADDLEOCR_TRT_LOG_LEVEL"}
    if level is not None:
        env["PADDLEOCR_TRT_LOG_LEVEL"] = level
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_stages_show_on_stderr_by_default() -> None:
    proc = _run()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "stdout stays clean\n"
    lines = proc.stderr.splitlines()
    assert lines[0] == "paddleocr_trt: building fp16 engine ..."
    assert lines[1].startswith("paddleocr_trt: building fp16 engine: done in 0.")
    assert "an ordinary info line" not in proc.stderr  # INFO is not shown unless asked
    assert "paddleocr_trt: WARNING: a warning line" in proc.stderr


def test_log_level_env_is_read() -> None:
    quiet = _run(level="WARNING")
    assert "building fp16 engine" not in quiet.stderr and "a warning line" in quiet.stderr
    verbose = _run(level="info")
    assert "building fp16 engine: done" in verbose.stderr
    assert "an ordinary info line" in verbose.stderr
    bad = _run(level="loud")
    assert "PADDLEOCR_TRT_LOG_LEVEL='loud': not a log level" in bad.stderr
    assert "building fp16 engine: done" in bad.stderr  # defaults still apply


def test_an_application_logging_config_gets_each_line_once() -> None:
    proc = _run("--basic-config")
    assert proc.stderr.count("building fp16 engine: done") == 1
    assert "APP paddleocr_trt.progress building fp16 engine ..." in proc.stderr
    assert "paddleocr_trt: " not in proc.stderr  # our fallback handler stepped aside


def test_optimize_model_returns_none_on_a_binding_runtime_error(
    ocr_models, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-PaddleOCRTRTError from the engine path (e.g. the bindings' RuntimeError) must not
    escape optimize_model. The pipeline call is replaced by a test double that raises it."""

    class PretendTensorRTPresent(TensorRTOptimizer):
        """Test double: reports TensorRT as usable so the engine path is reached."""

        def tensorrt_unavailable_reason(self) -> str | None:
            return None

    optimizer = PretendTensorRTPresent(cache_dir=tmp_path)

    def engine(*_args, **_kwargs):
        raise RuntimeError("set_optimization_profile_async: profile index 3 out of range")

    monkeypatch.setattr(optimizer.pipeline, "engine", engine)
    assert optimizer.optimize_model(ocr_models.det, model_type="det") is None
    assert "RuntimeError: set_optimization_profile_async" in (optimizer.last_failure or "")
