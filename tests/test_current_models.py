"""PaddleOCR 3.x's current models through the package, beside the PP-OCRv4 tests (issue 20.1).

PP-OCRv5 mobile in PaddleOCR 3.x's own PIR format: converted from ``inference.json``, validated
against native Paddle, fused, run by the ONNX Runtime engine inside real PaddleOCR (one image at
a time and the pipelined path for a list), results compared field by field with plain PaddleOCR.
PP-OCRv6 small from ONNX model dirs: the CLI checks and validates the source graph against ONNX
Runtime (no conversion) and turns a Paddle model dir into an ONNX model dir; the drop-in with
these dirs runs in an environment without Paddle (``test_no_paddle.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.engines import run_worker

from paddleocr_trt.model_resolve import resolve_model
from paddleocr_trt.testing.results import result_differences

PLAIN = {"device": "cpu"}
ENGINE = {"device": "cpu", "use_tensorrt": True, "precision": "fp16"}


def current_env(cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True",
        "PADDLEOCR_TRT_ENGINE": "onnxruntime",
        "PADDLEOCR_TRT_CACHE_DIR": str(cache),
    }


def job(pair, sample_images, pipelines: dict, count: int = 3) -> dict:
    """Three varied pages (a document, Chinese lines, a long line): one image at a time, then
    the list (PaddleOCR's multi-image call: the pipelined path)."""
    return {
        "models": pair.paddleocr_kwargs(),
        "images": [str(s.path) for s in sample_images[:count]],
        "image_dir": None,
        "pipelines": pipelines,
        "cases": ["single", "list"],
    }


@pytest.fixture(scope="session")
def v5_run(ppocrv5, sample_images, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("v5_cache")
    pipelines = {"plain": PLAIN, "engine": ENGINE}
    return run_worker(job(ppocrv5, sample_images, pipelines), current_env(cache))


@pytest.mark.slow
def test_ppocrv5_pir_through_the_onnxruntime_engine_equals_plain_paddleocr(v5_run) -> None:
    plain, engine = v5_run["results"]["plain"], v5_run["results"]["engine"]
    assert any(r["rec_texts"] for r in plain["single"]), "plain PaddleOCR read nothing"
    for case in ("single", "list"):
        problems = result_differences(plain[case], engine[case])
        assert not problems, f"{case}: " + "\n".join(problems)
    assert v5_run["pipelined_runs"] >= 1, "the list did not take the pipelined path"
    by_model = {d["model_name"]: d for d in v5_run["report"] if d["backend"] == "onnxruntime"}
    for name in ("PP-OCRv5_mobile_det", "PP-OCRv5_mobile_rec"):
        reason = by_model[name]["reason"]
        assert "fused graph" in reason and "converted and validated" in reason, reason
    checked = [line for line in v5_run["log"] if "validation of" in line and "passed" in line]
    assert any("native Paddle" in line for line in checked), v5_run["log"]
    assert sum("fused graph" in line for line in checked) == 2, v5_run["log"]


@pytest.mark.slow
def test_cli_converts_a_paddle_dir_into_an_onnx_model_dir_and_checks_onnx_dirs(
    ppocrv5, ppocrv6, tmp_path: Path
) -> None:
    """``convert --to-model-dir`` (validated against native Paddle) writes a PaddleX ONNX model
    dir; ``convert`` of an ONNX model dir converts nothing and validates against ONNX Runtime
    running its source graph, and says so."""
    env = {**current_env(tmp_path / "cache"), "PYTHONPATH": os.getcwd()}
    out = tmp_path / "PP-OCRv5_mobile_rec_onnx"

    def cli(*args: str) -> dict:
        proc = subprocess.run(
            [sys.executable, "-m", "paddleocr_trt.cli.main", *args, "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)

    made = cli("convert", str(ppocrv5.rec), "--to-model-dir", str(out))
    assert made["passed"] and Path(made["model_dir_written"]) == out
    assert "native Paddle" in made["conversion"]["reference"]
    assert sorted(p.name for p in out.iterdir()) == ["inference.onnx", "inference.yml"]
    written = resolve_model(out)
    assert written.is_onnx and written.model_name == "PP-OCRv5_mobile_rec"
    assert written.character_dict() == resolve_model(ppocrv5.rec).character_dict()

    for model_dir in (ppocrv6.det, out):
        checked = cli("convert", str(model_dir))
        assert checked["passed"], checked
        assert checked["conversion"]["source_format"] == "onnx"
        assert "source graph" in checked["conversion"]["reference"]
        assert checked["validation"]["agreement"] >= 0.99

    command = [sys.executable, "-m", "paddleocr_trt.cli.main", "convert", str(ppocrv5.rec)]
    again = subprocess.run(
        [*command, "--to-model-dir", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert again.returncode == 2 and again.stderr.startswith("error:"), again.stderr
    assert "not an empty directory" in again.stderr
