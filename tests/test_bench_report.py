"""benchmarks/report.py on the JSON of a real (tiny) benchmark run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORT = REPO_ROOT / "benchmarks" / "report.py"


@pytest.fixture(scope="module")
def run_json(tmp_path_factory: pytest.TempPathFactory, test_cache_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("bench") / "run.json"
    env = {
        **os.environ,
        "PADDLEOCR_TRT_BENCH_SCALE": "quick",
        "PADDLEOCR_TRT_BENCH_ROUNDS": "2",
        "PADDLEOCR_TRT_TEST_CACHE": str(test_cache_dir),
        "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "benchmarks/bench_models.py",
            "-k",
            "cls-1-",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--benchmark-json={out}",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_report_table_and_chart(run_json: Path, tmp_path: Path) -> None:
    data = json.loads(run_json.read_text())
    by_backend = {b["extra_info"]["backend"]: b for b in data["benchmarks"]}
    assert {"paddle", "onnxruntime"} <= set(by_backend)

    proc = subprocess.run(
        [sys.executable, str(REPORT), str(run_json), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "report.md").read_text()
    assert proc.stdout == text

    rows = {
        cells[3]: cells
        for line in text.splitlines()
        if line.startswith("| cls |")
        for cells in [[c.strip() for c in line.split("|")]]
    }
    assert set(rows) == set(by_backend)
    paddle_mean = by_backend["paddle"]["stats"]["mean"]
    ort_mean = by_backend["onnxruntime"]["stats"]["mean"]
    assert rows["paddle"][-2] == "1.00x"
    assert rows["onnxruntime"][-2] == f"{paddle_mean / ort_mean:.2f}x"
    assert rows["onnxruntime"][4] == f"{ort_mean * 1e3:.2f}"
    assert rows["onnxruntime"][8] == f"{1 / ort_mean:.1f}"  # batch 1: images/s = 1 / mean

    skipped = by_backend["paddle"]["extra_info"]["skipped_backends"]
    for backend, reason in skipped.items():
        assert f"- **{backend}**: {reason}" in text

    from PIL import Image

    with Image.open(tmp_path / "report.png") as image:
        assert image.format == "PNG"
        assert image.width > 300 and image.height > 200
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 10  # bars, text, axes: not a blank canvas


def test_report_rejects_non_benchmark_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    proc = subprocess.run(
        [sys.executable, str(REPORT), str(bad), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "not a pytest-benchmark JSON file" in proc.stderr
    assert "Traceback" not in proc.stderr
