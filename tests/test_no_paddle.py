"""No Paddle at run time (issue 20.3): with ONNX model dirs, ``PaddleOCR(..., use_tensorrt=True)``
works where paddlepaddle is not installed at all.

Runs real PaddleOCR in ``no_paddle_python`` (``fixtures/current_models.py``: this venv's
packages minus Paddle, so ``import paddle`` fails for real) on the PP-OCRv6 small ONNX model
dirs, from an empty cache: the source graphs are checked and validated against ONNX Runtime,
fused, cached and run by our ONNX Runtime engine, and the results equal stock PaddleOCR's own
``engine="onnxruntime"`` field by field. Where no engine of ours can run (TensorRT asked for,
none here), PaddleX's own ONNX Runtime runner serves, and nothing raises an import error.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from fixtures.current_models import SLIM_ENV_SECONDS
from fixtures.engines import WORKER

from paddleocr_trt.testing.results import result_differences

REPO = Path(__file__).resolve().parents[1]
V6 = ("PP-OCRv6_small_det", "PP-OCRv6_small_rec")


def _run(python: Path, job: dict, env: dict[str, str]) -> dict:
    import json

    proc = subprocess.run(
        [str(python), str(WORKER), json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def no_paddle_run(no_paddle_python, ppocrv6, sample_images, tmp_path_factory) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),  # this tree's package, as an installed one would be
        "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True",
        "PADDLEOCR_TRT_CACHE_DIR": str(tmp_path_factory.mktemp("no_paddle_cache")),
        "PADDLEOCR_TRT_ENGINE": "onnxruntime",
    }
    job = {
        "models": ppocrv6.paddleocr_kwargs(),
        "images": [str(s.path) for s in sample_images[:3]],
        "image_dir": None,
        "pipelines": {
            # stock PaddleOCR on ONNX model dirs: its own engine="onnxruntime"
            "plain": {"device": "cpu", "engine": "onnxruntime"},
            # the drop-in as the issue writes it: no engine= (Paddle absent picks ONNX Runtime)
            "engine": {"device": "cpu", "use_tensorrt": True},
            # TensorRT only, which cannot run here: PaddleX's own ONNX Runtime runner serves
            "tensorrt-only": {"device": "cpu", "use_tensorrt": True, "trt_engine": "tensorrt"},
        },
        "cases": ["single", "list"],
    }
    started = time.perf_counter()
    out = _run(no_paddle_python, job, env)
    out["seconds"] = time.perf_counter() - started
    return out


def test_the_environment_has_no_paddle(no_paddle_python) -> None:
    code = (
        "import importlib.metadata as m\n"
        "try:\n    import paddle\nexcept ModuleNotFoundError:\n    pass\n"
        "else:\n    raise SystemExit('paddle imported')\n"
        "try:\n    m.version('paddlepaddle')\nexcept m.PackageNotFoundError:\n    print('absent')\n"
        "import paddleocr, paddlex, onnxruntime\n"
    )
    proc = subprocess.run(
        [str(no_paddle_python), "-c", code], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "absent", proc.stderr[-2000:]
    print(f"no-Paddle venv made in {SLIM_ENV_SECONDS.get('made', 0.0):.1f} s")


@pytest.mark.slow
def test_drop_in_without_paddle_equals_stock_onnxruntime_engine(no_paddle_run) -> None:
    print(f"no-Paddle run (cold cache, 3 pipelines): {no_paddle_run['seconds']:.1f} s")
    assert no_paddle_run["paddle_imported"] is False
    plain = no_paddle_run["results"]["plain"]
    assert any(r["rec_texts"] for r in plain["single"]), "stock PaddleOCR read nothing"
    for label in ("engine", "tensorrt-only"):
        for case in ("single", "list"):
            problems = result_differences(plain[case], no_paddle_run["results"][label][case])
            assert not problems, f"{label}/{case}: " + "\n".join(problems)
    assert no_paddle_run["pipelined_runs"] >= 1, "the list did not take the pipelined path"


@pytest.mark.slow
def test_without_paddle_our_engine_validates_against_the_source_graph(no_paddle_run) -> None:
    report = no_paddle_run["report"]
    ours = {d["model_name"]: d for d in report if d["backend"] == "onnxruntime"}
    fallback = {d["model_name"]: d for d in report if d["backend"] == "paddlex-onnxruntime"}
    for name in V6:
        reason = ours[name]["reason"]
        assert "fused graph" in reason, reason
        assert "validated against the source ONNX graph" in reason, reason
        assert "GPU" in fallback[name]["reason"], fallback[name]  # TensorRT cannot run here
    checked = [line for line in no_paddle_run["log"] if "validation of" in line]
    assert checked and all("source graph" in line for line in checked), checked
    assert any("paddlepaddle is not installed" in line for line in no_paddle_run["log"])
