"""doctor's driver-vs-build CUDA check, and ``doctor --selftest`` where TensorRT is absent.

The build check reads real distribution metadata: the environment's own, and dist-info folders
written here the way pip writes them for the TensorRT / cuda-python packages on PyPI
(``tensorrt_cu12`` requires ``tensorrt_cu12_libs`` + ``tensorrt_cu12_bindings``, the bare
``tensorrt`` meta package requires one of them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from paddleocr_trt.cli.cuda_check import (
    CudaBuild,
    compare_builds,
    installed_builds,
    parse_driver_version,
)

ROOT = Path(__file__).resolve().parents[1]


def _dist(site: Path, name: str, version: str, requires: list[str] = ()) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_parse_driver_version() -> None:
    assert parse_driver_version(12040) == (12, 4)
    assert parse_driver_version(13000) == (13, 0)
    assert parse_driver_version(11080) == (11, 8)


def test_cu13_builds_on_a_cuda_12_driver_get_the_cu12_line(tmp_path: Path) -> None:
    """What `pip install tensorrt cuda-python` gives today, on an R550 (CUDA 12.4) driver."""
    _dist(tmp_path, "tensorrt", "10.16.1.11", ["tensorrt_cu13==10.16.1.11"])
    _dist(tmp_path, "tensorrt_cu13", "10.16.1.11", ["tensorrt_cu13_libs==10.16.1.11"])
    _dist(tmp_path, "tensorrt_cu13_bindings", "10.16.1.11")
    _dist(tmp_path, "cuda-python", "13.4.4", ["cuda-bindings~=13.4.4"])
    _dist(tmp_path, "cuda-bindings", "13.4.4")
    trt, cuda = installed_builds([str(tmp_path)])
    assert trt == CudaBuild("tensorrt-cu13-bindings", "10.16.1.11", 13)
    assert cuda == CudaBuild("cuda-bindings", "13.4.4", 13)
    check = compare_builds((12, 4), trt, cuda)
    assert not check.ok
    assert any("built for CUDA 13, which needs driver R580+" in p for p in check.problems)
    assert check.install is not None
    assert check.install.endswith("pip install 'paddleocr-trt[tensorrt-cu12]'")
    removed = check.install.split("&&")[0].split()
    assert {"tensorrt", "tensorrt-cu13", "tensorrt-cu13-bindings", "cuda-bindings"} <= set(removed)


def test_meta_package_alone_is_read_through_its_requirement(tmp_path: Path) -> None:
    _dist(tmp_path, "tensorrt", "11.4.0.106", ["tensorrt_cu12==11.4.0.106"])
    trt, cuda = installed_builds([str(tmp_path)])
    assert trt == CudaBuild("tensorrt", "11.4.0.106", 12) and cuda is None


def test_matching_cu12_builds_on_r580_are_fine(tmp_path: Path) -> None:
    _dist(tmp_path, "tensorrt_cu12_bindings", "10.16.1.11")
    _dist(tmp_path, "cuda-python", "12.9.4")
    trt, cuda = installed_builds([str(tmp_path)])
    check = compare_builds((13, 0), trt, cuda)
    assert check.ok and check.problems == [] and check.install is None


def test_missing_and_mismatched_builds() -> None:
    nothing = compare_builds((13, 0), None, None)
    assert not nothing.ok and nothing.install == "pip install 'paddleocr-trt[tensorrt-cu13]'"
    mixed = compare_builds(
        (13, 0), CudaBuild("tensorrt-cu12", "10.16.1.11", 12), CudaBuild("cuda-python", "13.0", 13)
    )
    assert not mixed.ok and any("matching builds" in p for p in mixed.problems)
    old = compare_builds((11, 8), None, None)
    assert not old.ok and old.install is None and "update the NVIDIA driver" in old.problems[0]
    assert not compare_builds(None, None, None).ok


def test_this_environment_reads_as_it_is() -> None:
    """The real venv: whatever is installed must read back with its real version."""
    from importlib.metadata import version

    trt, cuda = installed_builds()
    for build, module in ((trt, "tensorrt"), (cuda, "cuda")):
        if build is None:
            assert importlib.util.find_spec(module) is None
        else:
            assert build.version == version(build.distribution)


def test_extras_exist_per_cuda_major() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(r.startswith("tensorrt-cu12") for r in extras["tensorrt-cu12"])
    assert "cuda-python>=12.0,<13" in extras["tensorrt-cu12"]
    assert any(r.startswith("tensorrt-cu13") for r in extras["tensorrt-cu13"])
    assert "cuda-python>=13.0,<14" in extras["tensorrt-cu13"]
    assert extras["tensorrt"] == ["paddleocr-trt[tensorrt-cu12]"]


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paddleocr_trt.cli.main", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))},
    )


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_selftest_says_tensorrt_is_absent_and_exits_1(tmp_path: Path) -> None:
    proc = _doctor("--selftest", "--cache-dir", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert "TensorRT is not installed" in proc.stdout
    assert not (tmp_path / "selftest").exists()
    if importlib.util.find_spec("tensorrt_rtx") is None:
        assert "TensorRT is absent or unusable here, nothing was built" in proc.stdout
    else:  # TensorRT-RTX builds without a GPU; with no det model there is nothing to build
        assert "TensorRT      not used: TensorRT is not installed" in proc.stdout
        assert "det model     skipped: no *_det model" in proc.stdout


def test_doctor_json_has_the_cuda_build_check(tmp_path: Path) -> None:
    proc = _doctor("--json", "--cache-dir", str(tmp_path))
    report = json.loads(proc.stdout)
    builds = report["cuda_builds"]
    assert set(builds) >= {"driver_cuda", "tensorrt", "cuda_python", "problems", "install"}
    if builds["driver_cuda"] is None:
        assert "no NVIDIA driver found" in builds["problems"][0]


def test_selftest_tiny_model_runs_on_onnxruntime_and_repro_lines(tmp_path: Path) -> None:
    """The one-op model doctor --selftest builds is a valid ONNX graph (run it on ONNX Runtime)
    and the reproduction lines name its profile in Polygraphy's and trtexec's syntax."""
    import numpy as np

    from paddleocr_trt.cli.selftest import make_tiny_onnx, reproduce_commands
    from paddleocr_trt.engines.onnxruntime.runner import OnnxRuntimeRunner

    path = make_tiny_onnx(tmp_path / "tiny.onnx")
    x = np.linspace(-1, 1, 2 * 3 * 32 * 32, dtype=np.float32).reshape(2, 3, 32, 32)
    with OnnxRuntimeRunner(path) as ort:
        (y,) = ort.infer([x])
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    profile = {"x": {"min": [1, 3, 32, 32], "opt": [2, 3, 32, 32], "max": [4, 3, 32, 32]}}
    poly, trtexec = reproduce_commands(path, profile, "fp16")
    assert poly.startswith(f"polygraphy run {path} --trt --onnxrt --fp16")
    assert "--trt-min-shapes x:[1,3,32,32]" in poly and "--trt-max-shapes x:[4,3,32,32]" in poly
    assert f"trtexec --onnx={path} --fp16" in trtexec and "--optShapes=x:2x3x32x32" in trtexec
