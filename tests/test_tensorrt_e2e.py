"""End to end on a real TensorRT + GPU machine: build, load, run and validate det/rec/cls engines.

Skipped where TensorRT cannot build (no libnvinfer) or there is no CUDA GPU. Run with
``pytest -m tensorrt tests/test_tensorrt_e2e.py`` on a user's GPU machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from paddleocr_trt.backend.onnx.activation_memory import estimate_profiles
from paddleocr_trt.backend.paddle.runner import PaddleInferenceRunner
from paddleocr_trt.comparator import compare
from paddleocr_trt.comparator.inputs import build_validation_inputs
from paddleocr_trt.engines.tensorrt import adapter
from paddleocr_trt.engines.tensorrt.builder import BuildResult, build_engine
from paddleocr_trt.engines.tensorrt.config import BuildSettings
from paddleocr_trt.engines.tensorrt.runner import TensorRTRunner
from paddleocr_trt.errors import CacheError
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.profiles import ShapeProfile, default_profiles

SKIP_REASON = "TensorRT runtime (libnvinfer) or a CUDA GPU is not available on this machine"


def _tensorrt_usable() -> bool:
    try:
        from paddleocr_trt.backend.cuda.runtime import cuda_available

        ok, _ = cuda_available()
        if not ok:
            return False
        trt = adapter.load_tensorrt()
        adapter._new("Builder", adapter.recording_logger(trt))
    except Exception:
        return False
    return True


pytestmark = [
    pytest.mark.tensorrt,
    pytest.mark.slow,
    pytest.mark.skipif(not _tensorrt_usable(), reason=SKIP_REASON),
]

#: Small profiles keep builds short; each has a tight spec-like profile and a wider bucket.
PROFILES = {
    ModelType.DETECTION: [
        {"x": ShapeProfile((1, 3, 320, 320), (1, 3, 640, 640), (2, 3, 960, 960))},
        {"x": ShapeProfile((1, 3, 32, 32), (1, 3, 960, 960), (1, 3, 1600, 1600))},
    ],
    ModelType.RECOGNITION: [
        {"x": ShapeProfile((1, 3, 48, 320), (6, 3, 48, 320), (8, 3, 48, 320))},
        {"x": ShapeProfile((1, 3, 48, 32), (6, 3, 48, 640), (8, 3, 48, 1280))},
    ],
    ModelType.CLASSIFICATION: [
        {"x": ShapeProfile((1, 3, 48, 192), (6, 3, 48, 192), (8, 3, 48, 192))},
    ],
}


@pytest.fixture(scope="module")
def engines(onnx_models, tmp_path_factory) -> dict[tuple[ModelType, str], BuildResult]:
    out = tmp_path_factory.mktemp("engines")
    built = {}
    for mtype, conv in onnx_models.items():
        for precision in ("fp32", "fp16"):
            built[mtype, precision] = build_engine(
                conv.onnx_path,
                out / f"{mtype.value}-{precision}.plan",
                BuildSettings(precision=precision, workspace_bytes=2 << 30),
                PROFILES[mtype],
                timing_cache_dir=out / "timing",
            )
    return built


@pytest.fixture(scope="module")
def references(ocr_models):
    runners = {m: PaddleInferenceRunner(ocr_models.dir_for(m)) for m in ModelType}
    yield runners
    for r in runners.values():
        r.close()


def _inputs(mtype: ModelType, ocr_models, sample_images) -> list[np.ndarray]:
    images = [img.path for img in sample_images]
    kw = {"shapes": (320, 640, 960)} if mtype is ModelType.DETECTION else {"batch_sizes": (1, 6)}
    return build_validation_inputs(mtype, images, model_dir=ocr_models.dir_for(mtype), **kw)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("mtype", list(ModelType), ids=lambda m: m.value)
def test_engine_agrees_with_native_paddle(
    engines, references, ocr_models, sample_images, mtype: ModelType, precision: str
) -> None:
    result = engines[mtype, precision]
    assert result.plan_path.is_file() and result.plan_bytes > 0
    assert result.precision == (
        "fp32"
        if precision == "fp32"
        else ("fp16-onnx" if adapter.fp16_needs_fp16_onnx() else "fp16-flag")
    )
    inputs = _inputs(mtype, ocr_models, sample_images)
    with TensorRTRunner(result.plan_path, f"{mtype.value}-{precision}") as runner:
        assert runner.profiles == PROFILES[mtype]
        report = compare(mtype, references[mtype], runner, inputs)
    if precision == "fp32" or mtype is not ModelType.DETECTION:
        assert report.passed, report.to_dict()
    else:  # FP16 det may legitimately fail validation (NOTES 5); it must not crash
        assert 0.0 <= report.agreement <= 1.0


@pytest.mark.parametrize("mtype", list(ModelType), ids=lambda m: m.value)
def test_out_of_profile_shapes_split_or_fall_back(engines, references, mtype: ModelType) -> None:
    ref = references[mtype]
    shape = {
        ModelType.DETECTION: (1, 3, 2048, 96),  # beyond every det profile
        ModelType.RECOGNITION: (1, 3, 48, 2000),
        ModelType.CLASSIFICATION: (1, 3, 48, 320),
    }[mtype]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    big = rng.standard_normal((19, *PROFILES[mtype][0]["x"].opt[1:])).astype(np.float32)
    with TensorRTRunner(engines[mtype, "fp32"].plan_path, fallback=ref) as runner:
        (out,) = runner.infer([x])
        assert runner.fallback_calls == 1
        np.testing.assert_allclose(out, ref.infer([x])[0], rtol=0, atol=1e-6)
        (split_out,) = runner.infer([big])  # 19 > max batch 8: three chunks
        assert runner.fallback_calls == 1
        np.testing.assert_allclose(split_out, ref.infer([big])[0], rtol=1e-2, atol=2e-3)
    with (
        TensorRTRunner(engines[mtype, "fp32"].plan_path) as no_fallback,
        pytest.raises(ValueError, match="outside every optimization profile"),
    ):
        no_fallback.infer([x])


def test_timing_cache_makes_rebuild_faster(onnx_models, tmp_path: Path) -> None:
    onnx = onnx_models[ModelType.RECOGNITION].onnx_path
    settings = BuildSettings(precision="fp16", workspace_bytes=1 << 30)
    first = build_engine(
        onnx,
        tmp_path / "a.plan",
        settings,
        PROFILES[ModelType.RECOGNITION],
        timing_cache_dir=tmp_path / "tc",
    )
    assert first.timing_cache_path is not None and first.timing_cache_path.stat().st_size > 0
    second = build_engine(
        onnx,
        tmp_path / "b.plan",
        settings,
        PROFILES[ModelType.RECOGNITION],
        timing_cache_dir=tmp_path / "tc",
    )
    assert second.seconds < first.seconds, (first.seconds, second.seconds)


def test_plan_from_another_version_is_a_cache_miss(engines, tmp_path: Path) -> None:
    plan = bytearray(engines[ModelType.CLASSIFICATION, "fp32"].plan_path.read_bytes())
    plan[:32] = bytes(b ^ 0xFF for b in plan[:32])  # header: magic + version fields
    assert adapter.deserialize_engine(bytes(plan)) is None
    bad = tmp_path / "foreign.plan"
    bad.write_bytes(bytes(plan))
    with pytest.raises(CacheError, match="cannot load this plan"):
        TensorRTRunner(bad)


@pytest.mark.parametrize("mtype", list(ModelType), ids=lambda m: m.value)
def test_shipped_default_profiles_build_load_and_run(
    onnx_models, tmp_path: Path, mtype: ModelType
) -> None:
    """The shipped default profiles build, load and run; prints the real build time and the
    real device memory per profile next to the ONNX estimate (for the user's GPU)."""
    conv = onnx_models[mtype]
    profiles = default_profiles(mtype, conv.input_name)
    result = build_engine(
        conv.onnx_path, tmp_path / f"{mtype.value}.plan", BuildSettings(), profiles
    )
    engine = adapter.deserialize_engine(result.plan_path.read_bytes())
    assert engine is not None
    assert [t.name for t in engine.inputs] == [conv.input_name]
    assert engine.inputs[0].dtype == np.float32
    assert engine.num_profiles == len(result.profiles)
    real = [engine.profile_memory_size(i) or 0 for i in range(engine.num_profiles)]
    estimates = estimate_profiles(conv.onnx_path, list(result.profiles))
    record = {
        "model": mtype.value,
        "tensorrt": result.tensorrt_version,
        "build_seconds": round(result.seconds, 1),
        "plan_mib": round(result.plan_bytes / 2**20, 1),
        "profiles": [
            {
                "max": p[conv.input_name].max,
                "device_memory_mib": round(r / 2**20, 1),
                "estimate_peak_mib": round(e.peak_bytes / 2**20, 1),
            }
            for p, r, e in zip(result.profiles, real, estimates, strict=True)
        ],
    }
    sys.stdout.write(json.dumps(record) + "\n")
    assert all(r > 0 for r in real)
    assert sum(real) <= 8 << 30, record  # every context alive: half of a 16 GB card at most
    rng = np.random.default_rng(0)
    with TensorRTRunner(result.plan_path, f"{mtype.value}-defaults") as runner:
        for prof in result.profiles:
            x = rng.standard_normal(prof[conv.input_name].opt).astype(np.float32)
            (out,) = runner.infer([x])
            assert out.shape[0] == x.shape[0] and np.isfinite(out).all()
        assert runner.fallback_calls == 0 and runner.disabled_reason is None


def test_cuda_graphs_replay_across_shape_changes_within_their_bound(engines) -> None:
    """Graph replays (shapes re-set on the context first) equal eager runs; the cache evicts."""
    plan = engines[ModelType.RECOGNITION, "fp32"].plan_path
    widths = [640, 640, 960, 960, 640, 1280, 1280, 960, 640, 960]
    rng = np.random.default_rng(8)
    inputs = [rng.standard_normal((6, 3, 48, w)).astype(np.float32) for w in widths]
    with (
        TensorRTRunner(plan, "rec-graphs", use_cuda_graphs=True, cuda_graph_cache_size=2) as g,
        TensorRTRunner(plan, "rec-eager") as eager,
    ):
        for x in inputs:
            np.testing.assert_allclose(g.infer([x])[0], eager.infer([x])[0], rtol=0, atol=1e-5)
        (executor,) = g._executors.values()  # every width is in the second profile
        stats = executor.stats
    assert stats.graph_launches >= 2 and stats.shape_resets >= 1
    assert stats.graph_evictions >= 1 and executor.cached_graphs <= 2


def test_isolated_pipeline_and_selftest_build_real_engines(ocr_models, tmp_path: Path) -> None:
    """The whole engine path as users get it: each attempt in a child process, the history in
    the manifest, a cache hit on the second call; then ``doctor --selftest`` end to end."""
    import os
    import subprocess
    import sys

    from paddleocr_trt.cache.store import EngineCache
    from paddleocr_trt.pipeline import ArtifactPipeline, PipelineOptions

    pipeline = ArtifactPipeline(
        EngineCache(tmp_path / "cache"), PipelineOptions(precision="fp16", build_timeout_s=900)
    )
    built = pipeline.engine(ocr_models.det, ModelType.DETECTION)
    attempts = built.entry.metadata["attempts"]
    assert attempts[-1]["outcome"] == "passed" and not built.from_cache
    assert built.validation and built.validation["passed"]
    again = ArtifactPipeline(EngineCache(tmp_path / "cache"), pipeline.options)
    assert again.engine(ocr_models.det, ModelType.DETECTION).from_cache

    doctor = [sys.executable, "-m", "paddleocr_trt.cli.main", "doctor", "--selftest"]
    proc = subprocess.run(
        [*doctor, "--det-model", str(ocr_models.det), "--cache-dir", str(tmp_path / "selftest")],
        capture_output=True,
        text=True,
        timeout=1800,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tiny engine   passed" in proc.stdout and "det model     passed" in proc.stdout
    assert "polygraphy run" in proc.stdout and "trtexec --onnx=" in proc.stdout
