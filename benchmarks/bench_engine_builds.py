"""Engine build seconds and plan size per graph, precision and TensorRT flavor.

    pytest benchmarks/bench_engine_builds.py --benchmark-json=builds.json

Each entry is one real build of a fused graph the pipeline hands to TensorRT (det, rec,
text-line orientation; fp32 and fp16; the shipped default profiles) through the project's
attempt code (``attempt_worker.build_plan``). ``extra_info`` carries ``flavor``, ``model``,
``precision``, ``build_seconds``, ``plan_bytes``, ``targets`` and ``workspace_bytes``.
TensorRT-RTX builds without a GPU (ahead of time, for its default targets); full TensorRT needs
its libraries and a GPU, and is skipped, saying so, where they are missing. Built, not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from paddleocr_trt.backend.onnx.convert import convert_to_onnx
from paddleocr_trt.engines.tensorrt import adapter
from paddleocr_trt.engines.tensorrt.attempt_worker import build_plan
from paddleocr_trt.engines.tensorrt.config import BuildSettings
from paddleocr_trt.engines.tensorrt.flavors import DEFAULT_RTX_TARGETS, FLAVORS, RTX
from paddleocr_trt.fusion.artifacts import fused_input_name, with_side_inputs
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.profiles import default_profiles, profiles_to_dict

MODELS = {"det": ModelType.DETECTION, "rec": ModelType.RECOGNITION, "cls": ModelType.CLASSIFICATION}


@pytest.fixture(scope="module")
def onnx_files(ocr_models, tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench_build_onnx")
    return {
        short: convert_to_onnx(ocr_models.dir_for(mt), out / f"{short}.onnx", mt)
        for short, mt in MODELS.items()
    }


def _unavailable(flavor: str) -> str | None:
    from paddleocr_trt.integration.decision import cuda_status, tensorrt_status

    status = tensorrt_status(flavor)
    if not status.ok:
        return status.message()
    if flavor != RTX and not cuda_status().ok:  # full TensorRT builds on the GPU it targets
        return cuda_status().message()
    return None


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("flavor", FLAVORS)
def test_engine_build(
    benchmark, flavor: str, model: str, precision: str, onnx_files, ocr_models, tmp_path: Path
) -> None:
    why = _unavailable(flavor)
    if why is not None:
        pytest.skip(f"{flavor}: {why}")
    mtype = MODELS[model]
    conv = onnx_files[model]
    name = fused_input_name(mtype, conv.input_names[0])
    profiles = with_side_inputs(mtype, default_profiles(mtype, name), name)
    targets = DEFAULT_RTX_TARGETS if flavor == RTX else ()
    settings = BuildSettings(precision=precision, targets=targets, progress=False)
    payload = {
        "flavor": flavor,
        "onnx": str(conv.onnx_path),
        "plan": str(tmp_path / "engine.plan"),
        "settings": settings.to_dict(),
        "profiles": profiles_to_dict(profiles),
        "model_dir": str(ocr_models.dir_for(mtype)),
        "model_type": mtype.value,
        "timing_cache_dir": None,
    }
    result, _ = benchmark.pedantic(build_plan, args=(payload,), rounds=1, iterations=1)
    assert result.plan_bytes > 0
    benchmark.extra_info.update(
        flavor=flavor,
        engine=adapter.engine_label(),
        model=model,
        precision=precision,
        build_seconds=round(result.seconds, 3),
        plan_bytes=result.plan_bytes,
        targets=list(result.targets),
        workspace_bytes=result.workspace_bytes,
        build_attempts=result.attempts,
        run="not run (built only)",
    )
