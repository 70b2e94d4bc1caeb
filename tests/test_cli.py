"""``paddleocr-trt doctor | optimize | convert | benchmark`` as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from paddleocr_trt.cli import main as cli_main
from paddleocr_trt.integration.decision import tensorrt_status

MY_MODULES = ("doctor_cmd", "optimize_cmd")
WIRED = all(m in cli_main.COMMAND_MODULES for m in MY_MODULES)
CONSOLE_SCRIPT = Path(sys.executable).with_name("paddleocr-trt")

# Until the CLI entry lists these modules, drive them through their own register() the same way.
DRIVER = """
import argparse, sys
from paddleocr_trt.cli import doctor_cmd, optimize_cmd
parser = argparse.ArgumentParser(prog="paddleocr-trt")
sub = parser.add_subparsers(dest="command")
doctor_cmd.register(sub)
optimize_cmd.register(sub)
args = parser.parse_args()
sys.exit(args.func(args))
"""

TRT_MISSING = not tensorrt_status().ok


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(CONSOLE_SCRIPT)] if WIRED else [sys.executable, "-c", DRIVER]
    full_env = {**os.environ, "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True", **(env or {})}
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, env=full_env, timeout=300
    )


def assert_usage_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    for needle in needles:
        assert needle in proc.stderr


@pytest.mark.skipif(not WIRED, reason="doctor_cmd/optimize_cmd not yet in cli.main.COMMAND_MODULES")
def test_console_script_lists_the_commands() -> None:
    proc = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for command in ("doctor", "optimize", "convert", "benchmark"):
        assert command in proc.stdout


# -- doctor -------------------------------------------------------------------------------------


def test_doctor_json_reports_why_tensorrt_is_not_used(tmp_path: Path) -> None:
    proc = cli("doctor", "--json", "--cache-dir", tmp_path / "cache")
    report = json.loads(proc.stdout)
    assert set(report) >= {
        "python",
        "packages",
        "tensorrt",
        "cuda",
        "activation",
        "decision",
        "cache",
    }
    for label in ("paddle", "paddleocr", "paddlex", "paddle2onnx", "onnx", "onnxruntime"):
        assert report["packages"][label]["version"], label
    assert report["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert report["cache"] == {
        "path": str(tmp_path / "cache"),
        "exists": False,
        "entries": 0,
        "size_bytes": 0,
        "error": None,
    }
    assert report["activation"]["hook_installed"] is True
    assert report["activation"]["disabled"] is False
    decision = report["decision"]
    assert proc.returncode == (0 if decision["use_tensorrt"] else 1)
    if TRT_MISSING:
        assert proc.returncode == 1
        assert report["packages"]["tensorrt"] is None
        assert decision["backend"] == "paddle"
        # the default chain: TensorRT (absent), then TensorRT-RTX (no usable GPU here)
        assert report["engines"]["tensorrt"]["code"] == "tensorrt-missing"
        assert report["engines"]["tensorrt"]["reason"] == "TensorRT is not installed"
        assert decision["code"] == report["engines"]["tensorrt-rtx"]["code"]
        assert decision["code"] in ("no-cuda-gpu", "tensorrt-rtx-missing")
        assert report["tensorrt"]["ok"] is False
        assert report["flavor"]["flavor"] == "tensorrt-rtx"  # no GPU: build ahead of time
        assert report["flavor"]["install"] == "pip install 'paddleocr-trt[tensorrt-rtx]'"


def test_doctor_human_output_and_disable_env(tmp_path: Path) -> None:
    proc = cli("doctor", "--cache-dir", tmp_path, env={"PADDLEOCR_TRT_DISABLE": "1"})
    assert proc.returncode == 1
    assert "would fall back to native Paddle" in proc.stdout
    assert "disabled by PADDLEOCR_TRT_DISABLE" in proc.stdout
    assert "paddleocr " in proc.stdout and "Traceback" not in proc.stderr


def test_doctor_usage_error() -> None:
    proc = cli("doctor", "--precision", "int8")
    assert proc.returncode == 2
    assert "invalid choice: 'int8'" in proc.stderr


# -- convert ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_convert_validates_and_caches(ocr_models, tmp_path: Path) -> None:
    out = tmp_path / "out" / "cls.onnx"
    proc = cli("convert", ocr_models.cls, "-o", out, "--json", "--cache-dir", tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["passed"] is True
    assert report["model_type"] == "classification"  # read from inference.yml
    assert report["validation"]["agreement"] >= 0.99
    assert report["validation"]["passed"] is True
    assert report["from_cache"] is False
    assert Path(report["onnx_path"]) == out.resolve()

    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(str(out)))
    ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])

    again = cli("convert", ocr_models.cls, "--type", "cls", "--cache-dir", tmp_path / "cache")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(from cache)" in again.stdout
    assert "validation  passed" in again.stdout


# -- optimize -----------------------------------------------------------------------------------


@pytest.mark.skipif(not TRT_MISSING, reason="checks the TensorRT-missing path")
def test_optimize_without_tensorrt_exits_1_with_reason(ocr_models, tmp_path: Path) -> None:
    args = ("optimize", ocr_models.rec, "--type", "recognition", "--cache-dir", tmp_path)
    proc = cli(*args, "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    assert "TensorRT is not installed" in report["reason"]
    human = cli(*args)
    assert human.returncode == 1
    assert "error: optimize failed:" in human.stderr and "TensorRT is not installed" in human.stderr
    assert human.stderr.count("TensorRT is not installed") == 1  # printed once, not logged too
    assert "Traceback" not in human.stderr


def test_usage_errors_exit_2_without_traceback(ocr_models, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    assert_usage_error(cli("optimize", missing, "--type", "det"), "error:", "does not exist")
    assert_usage_error(
        cli("optimize", ocr_models.det, "--type", "segmentation"),
        "error: unknown model type 'segmentation'",
    )
    assert_usage_error(cli("convert", tmp_path), "error:", "not a Paddle inference model")
    assert_usage_error(
        cli("optimize", ocr_models.det, "--workspace-gb", "0"), "--workspace-gb must be a positive"
    )
    assert_usage_error(
        cli("benchmark", "--model-dir", ocr_models.cls, "--batch-sizes", "1,x"), "--batch-sizes"
    )
    assert_usage_error(
        cli("benchmark", tmp_path / "x.engine", "--model-dir", ocr_models.cls),
        "engine file not found",
    )


# -- benchmark ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_benchmark_native_only(ocr_models) -> None:
    proc = cli(
        "benchmark",
        "--model-dir",
        ocr_models.cls,
        "--batch-sizes",
        "1,4",
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["backend"] == "paddle"
    assert result["model_type"] == "classification"
    assert result["batch_sizes"] == [1, 4]
    assert "native Paddle only" in result["note"]
    assert "native Paddle only" in proc.stderr
    assert len(result["latencies"]) == 2 and all(t > 0 for t in result["throughputs"])
    for lat in result["latencies"]:
        assert 0 < lat["p50"] <= lat["p99"]


# -- progress bars ------------------------------------------------------------------------------

PROGRESS_SCRIPT = """
import time
from paddleocr_trt.progress import step, track
with step("converting demo"):
    time.sleep(0.8)
for _ in track([1, 2], "sweep demo"):
    time.sleep(0.1)
print("result")
"""


def _run_with_tty_stderr(code: str) -> tuple[str, str]:
    import fcntl
    import pty
    import struct
    import termios
    import threading

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO once the child side is closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    proc = subprocess.run(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=slave, timeout=60
    )
    os.close(slave)
    reader.join(10)
    os.close(master)
    return proc.stdout.decode(), b"".join(chunks).decode(errors="replace")


def test_progress_bars_only_on_a_terminal_stderr() -> None:
    stdout, tty_stderr = _run_with_tty_stderr(PROGRESS_SCRIPT)
    assert stdout == "result\n"
    assert "converting demo: 00:00" in tty_stderr
    assert "sweep demo: 100%" in tty_stderr
    piped = subprocess.run([sys.executable, "-c", PROGRESS_SCRIPT], capture_output=True, text=True)
    assert (piped.stdout, piped.stderr) == ("result\n", "")
