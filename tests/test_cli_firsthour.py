"""What a new user meets first on the command line, as real subprocesses (issue 21): usage
errors under ``--json``, closed readers, one failure line, readable ``cache info``, ``benchmark``
on ONNX Runtime, ``demo`` on PDFs and directories with the engine that runs here."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.firsthour_env import BIN, subprocess_env
from PIL import Image

CLI = [str(BIN / "paddleocr-trt")]


def cli(*args: object, timeout: int = 900, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=timeout,
        **kw,  # type: ignore[arg-type]
    )


def one_json(stdout: str) -> dict:
    """stdout is exactly one JSON document (json.loads rejects trailing data)."""
    return json.loads(stdout)


# -- usage errors and exit codes -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("bogus", "--json"),
        ("cache", "clear", "--bad", "--json"),
        ("optimize", "/nonexistent", "--json"),
        ("benchmark", "--model-dir", "/nonexistent", "--json"),
        ("demo", "/nonexistent.png", "--json"),
        ("cache", "clear", "--json"),
    ],
)
def test_json_usage_errors_are_one_document_and_exit_2(args: tuple[str, ...]) -> None:
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    doc = one_json(proc.stdout)
    assert doc.get("ok") is False or "error" in doc
    assert doc["error"]
    assert "Traceback" not in proc.stderr


def test_cache_clear_without_arguments_says_how() -> None:
    proc = cli("cache", "clear")
    assert proc.returncode == 2
    assert "cache clear KEY" in proc.stderr and "cache clear --all" in proc.stderr
    assert proc.stdout == ""


def test_optimize_failure_is_printed_once(ocr_models) -> None:
    """No TensorRT here: exit 1 and the reason once (it used to be logged and printed)."""
    proc = cli("optimize", ocr_models.cls)
    if proc.returncode == 0:
        pytest.skip("TensorRT built an engine here: no failure to print")
    assert proc.returncode == 1, proc.stderr
    reasons = [line for line in proc.stderr.splitlines() if "cannot optimize" in line]
    assert len(reasons) == 1, proc.stderr
    assert reasons[0].startswith("error: ")
    as_json = cli("optimize", ocr_models.cls, "--json")
    assert as_json.returncode == 1
    assert "cannot optimize" in one_json(as_json.stdout)["reason"]
    assert "cannot optimize" not in as_json.stderr


# -- closed readers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("cache", "list", "--json"),
        ("cache", "list"),
        ("doctor",),
        ("doctor", "--json"),
        ("--help",),
        ("cache", "clear", "--json"),
    ],
)
def test_a_closed_reader_ends_quietly(args: tuple[str, ...]) -> None:
    """``paddleocr-trt ... | head -0``: the reader is gone before the first write."""
    proc = subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read()
    code = proc.wait(timeout=300)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    # 1: output not delivered; 2: the usage error itself; --help: argparse drops the failed
    # write itself and exits 0
    assert code in ((0, 1) if args == ("--help",) else (1, 2)), (code, stderr)


def test_pipe_into_head_ends_quietly() -> None:
    proc = subprocess.run(
        ["bash", "-c", f"{CLI[0]} cache list --json | head -1; echo rc=${{PIPESTATUS[0]}}"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert proc.stdout.splitlines()[0] == "{"
    assert proc.stderr == "", proc.stderr


# -- convert, cache info, benchmark on ONNX Runtime ------------------------------------------------


@pytest.fixture(scope="module")
def converted_cls(ocr_models) -> dict:
    proc = cli("convert", ocr_models.cls, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return one_json(proc.stdout)


@pytest.mark.slow
def test_cache_info_prints_validation_readably(converted_cls) -> None:
    listing = one_json(cli("cache", "list", "--json").stdout)
    onnx_path = str(converted_cls["onnx_path"])
    digest = next(e["digest"] for e in listing["entries"] if onnx_path.startswith(e["path"] + "/"))
    proc = cli("cache", "info", digest)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index("validation:")
    body = lines[start + 1 :]
    assert len(body) >= 3 and all(line.startswith("  ") for line in body)
    assert max(len(line) for line in proc.stdout.splitlines()) <= 200
    assert any(line.strip().startswith("agreement:") for line in body)


@pytest.mark.slow
def test_benchmark_runs_an_onnx_file_on_onnx_runtime(converted_cls, ocr_models) -> None:
    started = time.monotonic()
    proc = cli(
        "benchmark",
        converted_cls["onnx_path"],
        "--model-dir",
        ocr_models.cls,
        "--batch-sizes",
        "1,4",
        "--iterations",
        "50",
        "--max-seconds",
        "1",
        "--json",
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = one_json(proc.stdout)
    assert result["backend"] == "onnxruntime"
    assert result["baseline"]["backend"] == "paddle"
    assert result["batch_sizes"] == [1, 4] == result["baseline"]["batch_sizes"]
    assert all(t > 0 for t in result["throughputs"] + result["baseline"]["throughputs"])
    # the time budget bounds the timed runs (at most 50 asked for)
    assert all(1 <= lat["runs"] <= 50 for lat in result["latencies"])
    # a progress line per measurement, each once; no warning repeated
    stages = [line for line in proc.stderr.splitlines() if "benchmark " in line and "done" in line]
    assert len(stages) == 4, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == len(set(warnings)), proc.stderr
    assert elapsed < 240, elapsed


@pytest.mark.slow
def test_benchmark_engine_onnxruntime_converts_first(converted_cls, ocr_models) -> None:
    proc = cli(
        "benchmark", "--engine", "onnxruntime", "--model-dir", ocr_models.cls,
        "--batch-sizes", "2", "--max-seconds", "1", "--no-native", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = one_json(proc.stdout)
    assert result["backend"] == "onnxruntime" and result["baseline"] is None
    assert result["engine_path"] == converted_cls["onnx_path"]


def test_benchmark_refuses_an_onnx_file_as_a_tensorrt_plan(tmp_path, ocr_models) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    proc = cli("benchmark", onnx, "--engine", "tensorrt", "--model-dir", ocr_models.cls)
    assert proc.returncode == 2 and "--engine onnxruntime" in proc.stderr


# -- demo ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_inputs(sample_images, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo_inputs")
    folder = root / "scans"
    folder.mkdir()
    by_name = {s.name: s.path for s in sample_images}
    for name in ("english_document", "tiny_word"):
        (folder / f"{name}.png").write_bytes(Path(by_name[name]).read_bytes())
    (folder / "notes.txt").write_text("not an image")
    pages = [Image.open(by_name[n]).convert("RGB") for n in ("grayscale", "chinese_lines")]
    pdf = root / "doc.pdf"
    pages[0].save(pdf, save_all=True, append_images=pages[1:])
    return {"dir": folder, "pdf": pdf, "image": Path(by_name["rgba"])}


@pytest.mark.slow
def test_demo_reads_every_pdf_page_and_a_directory(demo_inputs) -> None:
    proc = cli("demo", demo_inputs["dir"], demo_inputs["pdf"], "--json")
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = one_json(proc.stdout)
    names = [r["image"] for r in report["images"]]
    assert names == [
        "scans/english_document.png",
        "scans/tiny_word.png",
        "doc.pdf page 1/2",
        "doc.pdf page 2/2",
    ]
    assert report["device"] == "cpu" and report["engines_tried"] == ["onnxruntime"]
    engines = {m["model"]: (m["engine"], m["precision"]) for m in report["models"]}
    assert set(engines.values()) == {("onnxruntime", "fp32")}, engines
    for record in report["images"]:
        assert record["lines"], record
        assert record["matches_native"]["same"], record["matches_native"]


@pytest.mark.slow
def test_demo_human_output_under_umask_000(demo_inputs, tmp_path) -> None:
    models = tmp_path / "models"
    proc = subprocess.run(
        [*CLI, "demo", demo_inputs["image"], "--engine", "tensorrt,onnxruntime"],
        capture_output=True,
        text=True,
        env=subprocess_env(PADDLEOCR_TRT_MODELS_DIR=str(models)),
        timeout=900,
        preexec_fn=lambda: os.umask(0),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    assert out.startswith("paddleocr-trt demo on cpu")
    assert re.search(r"PP-OCRv4_mobile_det\s+onnxruntime\s+fp32", out), out
    assert "same as native Paddle" in out and "1/1 pages identical" in out
    # the TensorRT problem once, not once per model
    problems = [line for line in out.splitlines() if line.startswith("problem:")]
    assert len(problems) == len(set(problems)) >= 1, out
    assert len(problems) == 1, problems  # one TensorRT problem for three models
    # PADDLEOCR_TRT_MODELS_DIR honoured, and nothing the demo made is world-writable
    assert (models / "legacy" / "PP-OCRv4_mobile_det" / "inference.yml").is_file()
    for path in [models, *models.rglob("*")]:
        if path.is_dir():
            assert not path.stat().st_mode & stat.S_IWOTH, path


# -- log format and progress lines ---------------------------------------------------------------

LOG_SCRIPT = """
import logging, warnings, time
from paddleocr_trt.log import logger
from paddleocr_trt.progress import step
logger.warning("before paddle")
import paddle  # adds a root handler with its own format
logger.warning("after paddle")
with step("converting demo"):
    time.sleep(1.2)
    logger.warning("during the bar")
    warnings.warn("a python warning during the bar")
    time.sleep(0.6)
"""


def test_one_log_format_after_paddle_import() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", LOG_SCRIPT], capture_output=True, text=True,
        env=subprocess_env(), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ours = [line for line in proc.stderr.splitlines() if "paddle" in line and "WARNING" in line]
    assert "paddleocr_trt: WARNING: before paddle" in ours
    assert "paddleocr_trt: WARNING: after paddle" in ours
    assert not [line for line in ours if line.startswith("[")], ours  # not Paddle's format


def test_warnings_start_on_their_own_line_while_a_bar_is_drawn() -> None:
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
            except OSError:
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    proc = subprocess.run(
        [sys.executable, "-c", LOG_SCRIPT], stdout=subprocess.PIPE, stderr=slave,
        env=subprocess_env(), timeout=300,
    )  # fmt: skip
    os.close(slave)
    reader.join(10)
    os.close(master)
    assert proc.returncode == 0
    tty = b"".join(chunks).decode(errors="replace")
    assert "converting demo: 00:0" in tty
    for message in ("paddleocr_trt: WARNING: during the bar", "a python warning during the bar"):
        at = tty.index(message)
        if message.startswith("a python"):
            at = tty.rindex("\n", 0, at) + 1  # the warning line starts with its file name
        before = tty[:at].rsplit("\n", 1)[-1]
        # whatever precedes it on its line was erased (\r then clear) - no bar text left there
        visible = before.rsplit("\r", 1)[-1]
        assert visible.strip(" ") in ("", "\x1b[A"), repr(tty[max(0, at - 120) : at + 40])
