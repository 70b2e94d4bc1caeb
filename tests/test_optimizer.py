"""The public API and the artifact pipeline on this CPU machine (real conversions, real cache)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from paddleocr_trt import TensorRTOptimizer
from paddleocr_trt.cache.key import CacheKey
from paddleocr_trt.cache.store import EngineCache
from paddleocr_trt.errors import ModelDirError, UnsupportedModelTypeError, ValidationFailedError
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.pipeline import ArtifactPipeline, PipelineOptions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def optimizer_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("optimizer-cache")


@pytest.fixture(scope="module")
def few_images(sample_images) -> list[Path]:
    """Two images keep validation short; the full set is exercised by the comparator tests."""
    by_kind = {s.name: s.path for s in sample_images}
    return [by_kind["english_document"], by_kind["chinese_lines"]]


def test_convert_model_validates_and_caches(ocr_models, optimizer_cache, few_images, tmp_path):
    optimizer = TensorRTOptimizer(cache_dir=optimizer_cache, validation_images=few_images)
    out = tmp_path / "cls.onnx"
    report = optimizer.convert_model(ocr_models.cls, out, "classification")
    assert report.passed, report.error
    assert report.validation["agreement"] >= 0.99
    assert out.is_file() and onnx.load(str(out)).graph.node
    json.dumps(report.to_dict())  # --json output must serialise
    again = optimizer.convert_model(ocr_models.cls, None, "classification")
    assert again.from_cache and again.passed
    entries = EngineCache(optimizer_cache).entries()
    assert [e.kind for e in entries] == ["onnx"]
    assert entries[0].validation["agreement"] == report.validation["agreement"]


def test_optimize_without_tensorrt_returns_none_with_reason(ocr_models, optimizer_cache):
    optimizer = TensorRTOptimizer(cache_dir=optimizer_cache)
    assert optimizer.optimize_model(ocr_models.det, model_type="detection") is None
    assert "TensorRT is not installed" in (optimizer.last_failure or "")


def test_bad_arguments_raise_clear_errors(ocr_models, tmp_path):
    optimizer = TensorRTOptimizer(cache_dir=tmp_path)
    with pytest.raises(ModelDirError, match="does not exist"):
        optimizer.optimize_model(tmp_path / "nope", model_type="detection")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelDirError, match="not a Paddle inference model"):
        optimizer.convert_model(tmp_path, model_type="detection")
    with pytest.raises(UnsupportedModelTypeError, match="layout"):
        optimizer.convert_model(ocr_models.det, model_type="layout")
    with pytest.raises(ValueError, match="precision"):
        TensorRTOptimizer(precision="int8")


def test_benchmark_without_engine_measures_native_and_says_so(ocr_models, optimizer_cache):
    optimizer = TensorRTOptimizer(cache_dir=optimizer_cache)
    result = optimizer.benchmark_performance(
        None,
        [1, 2],
        model_dir=ocr_models.cls,
        model_type="classification",
        iterations=2,
        warmup=1,
    )
    assert result is not None and result.backend == "paddle"
    assert result.batch_sizes == [1, 2]
    assert all(lat["p50"] > 0 and lat["p99"] >= lat["p50"] for lat in result.latencies)
    assert all(t > 0 for t in result.throughputs)
    assert "native Paddle only" in (result.note or "")


def test_corrupted_onnx_fails_validation_and_leaves_nothing(
    ocr_models, onnx_models, tmp_path, few_images
):
    """A converted graph with perturbed weights must be rejected and never published."""
    cache = EngineCache(tmp_path / "cache")
    pipeline = ArtifactPipeline(cache, PipelineOptions(validation_images=tuple(few_images)))
    model = onnx.load(str(onnx_models[ModelType.CLASSIFICATION].onnx_path))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        weights = numpy_helper.to_array(init)
        if weights.dtype == np.float32 and weights.ndim == 4:
            noisy = weights + rng.normal(0, 0.5 * (weights.std() + 1e-6), weights.shape)
            init.CopyFrom(numpy_helper.from_array(noisy.astype(np.float32), init.name))
    key = CacheKey(
        model_fingerprint=cache.fingerprint(ocr_models.cls).digest,
        model_type="classification",
        kind="onnx",
        precision="fp32",
    )

    def create(tmp: Path) -> Path:
        path = tmp / "model.onnx"
        onnx.save(model, str(path))
        return path

    def validate(path: Path):
        from paddleocr_trt.engines.onnxruntime.runner import OnnxRuntimeRunner

        inputs = pipeline.validation_inputs(ocr_models.cls, ModelType.CLASSIFICATION)
        with OnnxRuntimeRunner(path) as candidate:
            return pipeline.compare(ModelType.CLASSIFICATION, ocr_models.cls, candidate, inputs)

    with pytest.raises(ValidationFailedError) as info:
        cache.get_or_create(key, create, artifact_name="model.onnx", validate_fn=validate)
    assert info.value.report is not None
    assert cache.get(key) is None
    assert not list(cache.root.glob("onnx/*"))
    leftovers = list((cache.root / "tmp").glob("*")) if (cache.root / "tmp").exists() else []
    assert leftovers == []


def test_two_processes_convert_once(ocr_models, tmp_path, few_images):
    """Two processes on an empty cache: one conversion, both get the same validated artifact."""
    script = textwrap.dedent(
        f"""
        import json, logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(name)s %(message)s")
        from paddleocr_trt import TensorRTOptimizer
        opt = TensorRTOptimizer(cache_dir={str(tmp_path / "cache")!r},
                                validation_images={[str(p) for p in few_images]!r})
        r = opt.convert_model({str(ocr_models.cls)!r}, None, "classification")
        print(json.dumps({{"passed": r.passed, "path": str(r.onnx_path)}}))
        """
    )
    env = {**os.environ, "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert all(r["passed"] for r in results)
    assert results[0]["path"] == results[1]["path"]
    conversions = sum(err.count("paddleocr_trt.onnx.convert converted") for _, err in outs)
    assert conversions == 1, [err[-2000:] for _, err in outs]


def test_decision_reasons_on_this_machine() -> None:
    from paddleocr_trt.integration.decision import decide
    from paddleocr_trt.integration.request import TensorRTRequest

    status = decide(TensorRTRequest("fp16", "gpu"), {"device_type": "gpu"})
    assert not status.ok and status.code == "tensorrt-missing"
    assert "pip install" in status.message()
    status_cpu = decide(TensorRTRequest("fp16", "cpu"), {"device_type": "cpu"})
    assert status_cpu.code == "not-a-gpu-device"
    bad = decide(TensorRTRequest("int8", "gpu"), {"device_type": "gpu"})
    assert bad.code == "unsupported-precision"
