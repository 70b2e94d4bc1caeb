"""The FP16 -> pinned FP16 -> FP32 attempt loop and the failure memo: control flow only.

TensorRT cannot run here, so the build/validate step is replaced by ``FakeEngineBuilder``, a
test double that raises or returns what each test scripts. Nothing here claims TensorRT works;
the real builder (a child process per attempt) is exercised in test_isolation.py and, on a GPU,
tests/test_tensorrt_e2e.py.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from fixtures.cache import make_key

from paddleocr_trt.cache.failures import FailureMemo
from paddleocr_trt.cache.store import EngineCache
from paddleocr_trt.engine_graph import EngineGraph
from paddleocr_trt.engines.tensorrt.artifact import engine_build, tensorrt_engine
from paddleocr_trt.engines.tensorrt.attempts import (
    AttemptJob,
    AttemptResult,
    IsolatedEngineBuilder,
    attempt_plan,
    run_attempts,
)
from paddleocr_trt.engines.tensorrt.config import BuildSettings
from paddleocr_trt.errors import EngineBuildError, OutOfMemoryError, ValidationFailedError
from paddleocr_trt.isolation import KIND_CRASHED, KIND_TIMEOUT, ChildProcessFailure
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.pipeline import (
    Artifact,
    ArtifactPipeline,
    PipelineOptions,
    RememberedFailureError,
)

PINNED = ("p2o.Conv.3", "p2o.Sigmoid.0")


class FakeEngineBuilder:
    """Test double of the TensorRT build + validate step (no TensorRT involved).

    ``script`` gives, per call, an exception to raise or an agreement to report (>= 0.99
    passes). It writes a dummy plan on "success" so the caller has a file to publish.
    """

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.jobs: list[AttemptJob] = []

    def build_and_validate(self, job: AttemptJob) -> AttemptResult:
        self.jobs.append(job)
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        job.plan_path.write_bytes(b"fake plan from FakeEngineBuilder")
        report = {"passed": step >= 0.99, "agreement": step, "reason": None}
        if not report["passed"]:
            report["reason"] = f"agreement {step} < 0.99"
        return AttemptResult(report, build_seconds=0.01, tensorrt_version="fake", extra={})


def _job_for(tmp: Path):
    def job_for(settings: BuildSettings, number: int) -> AttemptJob:
        return AttemptJob(
            onnx_path=tmp / "model.onnx",
            plan_path=tmp / f"{settings.precision}-{number}.plan",
            settings=settings,
            profiles=[],
            model_dir=tmp,
            model_type="detection",
            inputs_path=tmp / "inputs.npz",
            min_agreement=0.99,
            device_id=0,
            timing_cache_dir=None,
        )

    return job_for


def _specs(pinned: Any = PINNED) -> list[Any]:
    fp16 = BuildSettings(precision="fp16", workspace_bytes=1 << 30)
    return attempt_plan(
        fp16, lambda: None if pinned is None else BuildSettings("fp16", 1 << 30, fp32_layers=pinned)
    )


def test_binding_errors_go_on_to_the_next_attempt(tmp_path: Path) -> None:
    builder = FakeEngineBuilder(
        [
            EngineBuildError("parser: unsupported node"),
            RuntimeError("set_optimization_profile_async: profile index out of range"),
            0.999,
        ]
    )
    plan, report, meta = run_attempts(builder, _specs(), _job_for(tmp_path), what="det")
    assert plan == builder.jobs[2].plan_path and plan.is_file()
    assert report["passed"] and meta["precision"] == "fp32"
    history = meta["attempts"]
    assert [h["outcome"] for h in history] == ["error", "error", "passed"]
    assert [h["error_type"] for h in history[:2]] == ["EngineBuildError", "RuntimeError"]
    assert "profile index out of range" in history[1]["error"]
    assert history[1]["fp32_layers"] == list(PINNED)
    assert all(isinstance(h["seconds"], float) for h in history)


def test_every_failure_kind_is_recorded_and_the_last_report_kept(tmp_path: Path) -> None:
    crash = ChildProcessFailure(KIND_CRASHED, "killed by SIGSEGV", error_type="Crash")
    builder = FakeEngineBuilder([OutOfMemoryError("out of memory at 128 MiB"), 0.42, crash])
    with pytest.raises(ValidationFailedError) as info:
        run_attempts(builder, _specs(), _job_for(tmp_path), what="det")
    history = info.value.attempts
    assert [h["outcome"] for h in history] == ["error", "failed-validation", "crashed"]
    assert history[0]["error_type"] == "OutOfMemoryError"
    assert history[1]["agreement"] == 0.42
    assert history[2]["error_type"] == "Crash"
    assert info.value.report["agreement"] == 0.42
    assert "fp16: error (OutOfMemoryError: out of memory at 128 MiB)" in str(info.value)
    assert "fp32: crashed (Crash: killed by SIGSEGV)" in str(info.value)
    assert not any(j.plan_path.exists() for j in builder.jobs)  # failed plans are removed


def test_no_validated_attempt_raises_build_error_and_skips_missing_pinning(tmp_path: Path) -> None:
    timeout = ChildProcessFailure(KIND_TIMEOUT, "ran past 5 s", error_type="Timeout")
    builder = FakeEngineBuilder([timeout, EngineBuildError("no kernel")])
    with pytest.raises(EngineBuildError) as info:
        run_attempts(builder, _specs(pinned=None), _job_for(tmp_path), what="det")
    outcomes = [h["outcome"] for h in info.value.attempts]
    assert outcomes == ["timeout", "skipped", "error"]
    assert len(builder.jobs) == 2


def test_a_failing_sensitivity_analysis_skips_only_the_pinned_attempt(tmp_path: Path) -> None:
    def analysis() -> BuildSettings:
        raise MemoryError("onnxruntime could not allocate")

    fp16 = BuildSettings(precision="fp16", workspace_bytes=1 << 30)
    builder = FakeEngineBuilder([0.5, 0.995])
    _, _, meta = run_attempts(builder, attempt_plan(fp16, analysis), _job_for(tmp_path), what="det")
    skipped = meta["attempts"][1]
    assert skipped["outcome"] == "skipped" and skipped["error_type"] == "MemoryError"
    assert [h["outcome"] for h in meta["attempts"]] == ["failed-validation", "skipped", "passed"]


def test_fp32_request_is_one_attempt(tmp_path: Path) -> None:
    specs = attempt_plan(BuildSettings("fp32", 1 << 30), lambda: pytest.fail("no pinning"))
    builder = FakeEngineBuilder([EngineBuildError("x")])
    with pytest.raises(EngineBuildError):
        run_attempts(builder, specs, _job_for(tmp_path), what="det")
    assert len(builder.jobs) == 1


# -- the failure memo, through the pipeline ------------------------------------------------------


def _ready_onnx(cache: EngineCache, source: Path) -> Artifact:
    """``source`` as a real ONNX entry of ``cache``: the engine step reads the bytes the cache
    checked (``CacheEntry.read_artifact``), never a path outside it."""

    def create(tmp: Path) -> tuple[Path, dict[str, Any]]:
        (tmp / "model.onnx").write_bytes(source.read_bytes())
        return tmp / "model.onnx", {"input_names": ["x"]}

    key = make_key(model_fingerprint=hashlib.sha256(str(source).encode()).hexdigest())
    entry = cache.get_or_create(key, create, artifact_name="model.onnx")
    return Artifact(entry, from_cache=True)


class _StubbedPipeline(ArtifactPipeline):
    """Test double of the GPU-dependent parts of the recipe: a ready-made ONNX entry (no
    conversion) and a tiny validation input; ``engine_key_fields`` feed the key double of
    :func:`_engine`."""

    engine_key_fields: ClassVar[dict[str, Any]] = {}

    def onnx(self, model_dir, model_type) -> Artifact:
        return _ready_onnx(self.cache, Path(model_dir) / "inference.pdmodel")

    def engine_graph(self, onnx: Artifact, model: Any) -> EngineGraph:
        """Keyed, not made: the stand-in "ONNX" is no graph fusion could read."""
        return EngineGraph.from_onnx(onnx, model)

    def validation_inputs(self, model_dir, model_type) -> list[np.ndarray]:
        return [np.zeros((1, 3, 32, 32), np.float32)]

    def fused_validation_pairs(self, model_dir, model_type) -> list[Any]:
        from paddleocr_trt.comparator.fused import FusedPair

        return [FusedPair(np.zeros((1, 3, 32, 32), np.float32), np.zeros((1, 32, 32, 3), np.uint8))]


def _engine(pipeline: _StubbedPipeline, model_dir: Any, model_type: str) -> Artifact:
    """The recipe's steps 1 and 2 (stubbed ONNX), then the TensorRT step itself with a test
    double of its engine key: fixed fields, no CUDA query for the GPU's name. The key is a value
    the step is handed (``EngineBuild``), as ``TensorRTEngine.prepare`` hands it the real one."""
    graph = pipeline.graph(model_dir, model_type)
    build = engine_build(pipeline.options, graph)
    key_double = make_key(
        kind="engine", precision=build.settings.precision, **pipeline.engine_key_fields
    )
    return tensorrt_engine(pipeline, graph, replace(build, key=key_double))


def test_failure_is_remembered_listed_and_cleared(ocr_models, tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "cache")
    options = PipelineOptions(precision="fp32", build_timeout_s=60)
    builder = FakeEngineBuilder([EngineBuildError("Myelin: no implementation")])
    pipeline = _StubbedPipeline(cache, options, engine_builder=builder)
    with pytest.raises(EngineBuildError):
        _engine(pipeline, ocr_models.det, "det")
    memo = FailureMemo(cache.root)
    (record,) = memo.list()
    assert record.kind == "engine" and record.error_type == "EngineBuildError"
    assert record.attempts[0]["error"] == "Myelin: no implementation"

    started = time.perf_counter()
    with pytest.raises(RememberedFailureError, match="Myelin: no implementation"):
        _engine(pipeline, ocr_models.det, "det")  # no second build
    assert time.perf_counter() - started < 5
    assert len(builder.jobs) == 1

    # another key (e.g. a new TensorRT version) is tried afresh
    pipeline.engine_key_fields = {"tensorrt_version": "11.4.0"}
    builder.script.append(0.995)
    artifact = _engine(pipeline, ocr_models.det, "det")
    assert artifact.path.read_bytes() == b"fake plan from FakeEngineBuilder"
    assert artifact.entry.metadata["attempts"][0]["outcome"] == "passed"

    assert [r.digest for r in memo.remove(record.digest[:10])] == [record.digest]
    pipeline.engine_key_fields = {}
    builder.script.append(0.999)
    assert _engine(pipeline, ocr_models.det, "det").entry.metadata["precision"] == "fp32"


def test_a_timeout_is_not_remembered_and_is_retried(ocr_models, tmp_path: Path) -> None:
    """Issue 19: a failure caused by a timeout (or a signal) may not happen again, so it is not
    remembered: the next start builds again."""
    cache = EngineCache(tmp_path / "cache")
    timeout = ChildProcessFailure(KIND_TIMEOUT, "ran past 1 s", error_type="Timeout")
    builder = FakeEngineBuilder([timeout])
    short = _StubbedPipeline(
        cache, PipelineOptions(precision="fp32", build_timeout_s=1), engine_builder=builder
    )
    with pytest.raises(EngineBuildError):
        _engine(short, ocr_models.det, "det")
    assert FailureMemo(cache.root).list() == []
    builder.script.append(0.999)
    assert _engine(short, ocr_models.det, "det").path.is_file()
    assert len(builder.jobs) == 2


class SegfaultingEngineBuilder(IsolatedEngineBuilder):
    """Test double: the real isolated builder, but its child segfaults instead of building."""

    target = "paddleocr_trt.testing.child_targets:segfault"


def test_a_segfaulting_child_is_a_failed_attempt_remembered(ocr_models, tmp_path: Path) -> None:
    """Real child processes that die of SIGSEGV: the pipeline survives, records each attempt's
    signal, remembers the failure and does not start children again."""
    cache = EngineCache(tmp_path / "cache")
    builder = SegfaultingEngineBuilder(timeout_s=60)
    pipeline = _StubbedPipeline(cache, PipelineOptions(precision="fp32"), engine_builder=builder)
    with pytest.raises(EngineBuildError, match="SIGSEGV"):
        _engine(pipeline, ocr_models.det, "det")
    (record,) = FailureMemo(cache.root).list()
    (attempt,) = record.attempts
    assert attempt["outcome"] == "crashed" and attempt["error_type"] == "Crash"
    assert "killed by SIGSEGV" in attempt["error"]
    with pytest.raises(RememberedFailureError):
        _engine(pipeline, ocr_models.det, "det")


class OnnxRuntimeStandInBuilder(IsolatedEngineBuilder):
    """Test double: the real isolated builder and worker, with ONNX Runtime in TensorRT's place
    (``child_targets.build_and_validate_on_onnxruntime``); not TensorRT working."""

    target = "paddleocr_trt.testing.child_targets:build_and_validate_on_onnxruntime"


class _OnnxReadyPipeline(_StubbedPipeline):
    """The stubbed key, but the real converted ONNX and the real validation inputs."""

    onnx_path: Path

    def onnx(self, model_dir, model_type) -> Artifact:
        return _ready_onnx(self.cache, self.onnx_path)

    engine_graph = ArtifactPipeline.engine_graph  # the real graph stage, cached
    validation_inputs = ArtifactPipeline.validation_inputs
    fused_validation_pairs = ArtifactPipeline.fused_validation_pairs


def test_worker_round_trip_with_onnxruntime_in_tensorrts_place(
    ocr_models, onnx_models, sample_images, tmp_path: Path
) -> None:
    """Everything of an engine attempt but TensorRT itself, across a real child process:
    settings/profiles/inputs out, real Paddle comparison, the report back into the manifest."""
    from paddleocr_trt.model_types import ModelType

    cache = EngineCache(tmp_path / "cache")
    options = PipelineOptions(
        precision="fp32", validation_images=tuple(s.path for s in sample_images[:2])
    )
    pipeline = _OnnxReadyPipeline(
        cache, options, engine_builder=OnnxRuntimeStandInBuilder(timeout_s=300)
    )
    pipeline.onnx_path = onnx_models[ModelType.CLASSIFICATION].onnx_path
    artifact = _engine(pipeline, ocr_models.cls, "cls")
    assert artifact.validation["passed"] and artifact.validation["num_inputs"] >= 2
    assert artifact.validation["candidate"].startswith("onnxruntime stand-in")
    (attempt,) = artifact.entry.metadata["attempts"]
    assert attempt["outcome"] == "passed" and attempt["agreement"] >= 0.99
    assert artifact.entry.metadata["tensorrt_version"] == "onnxruntime stand-in (not TensorRT)"
    import onnx

    from paddleocr_trt.backend.onnx.fuse import UINT8_INPUT

    built = onnx.load(str(artifact.path))  # the stand-in "plan" is the graph it was given
    assert [i.name for i in built.graph.input] == [UINT8_INPUT]  # the fused graph, uint8 NHWC
    from paddleocr_trt.fusion.artifacts import FUSED_GRAPH

    assert artifact.entry.metadata["graph"] == FUSED_GRAPH


def test_build_timeout_setting(ocr_models, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    from paddleocr_trt.settings import ENV_BUILD_TIMEOUT_S, build_timeout_s

    assert build_timeout_s({}) == 1800.0
    assert build_timeout_s({ENV_BUILD_TIMEOUT_S: "90"}) == 90.0
    for bad in ("soon", "0", "-5"):
        with pytest.raises(ValueError, match=ENV_BUILD_TIMEOUT_S):
            build_timeout_s({ENV_BUILD_TIMEOUT_S: bad})
    monkeypatch.setenv(ENV_BUILD_TIMEOUT_S, "42")
    assert PipelineOptions().effective_build_timeout_s() == 42.0
    assert PipelineOptions(build_timeout_s=7).effective_build_timeout_s() == 7
    with pytest.raises(ValueError, match="build_timeout_s"):
        PipelineOptions(build_timeout_s=0)

    cli = [sys.executable, "-m", "paddleocr_trt.cli.main", "optimize", str(ocr_models.det)]
    proc = subprocess.run(
        [*cli, "--type", "det", "--build-timeout", "0"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "--build-timeout must be a positive" in proc.stderr


def test_out_of_memory_retries_the_sequence_with_smaller_profiles(
    ocr_models, tmp_path: Path
) -> None:
    """Every attempt ran out of GPU memory with the shipped profiles (e.g. a 16 GB card): the
    sequence is tried again with ``smaller_profiles``, and what passes records what it used."""
    from paddleocr_trt.errors import OutOfMemoryError
    from paddleocr_trt.profiles import ShapeProfile, profiles_to_dict

    big = [{"x": ShapeProfile((1, 3, 48, 320), (8, 3, 48, 640), (16, 3, 48, 1280))}]
    options = PipelineOptions(
        precision="fp32", build_timeout_s=60, profiles={ModelType.RECOGNITION: big}
    )
    oom = OutOfMemoryError("the context of profile 0 needs 9000 MiB, 6000 MiB free")
    builder = FakeEngineBuilder([oom, 0.999])
    pipeline = _StubbedPipeline(EngineCache(tmp_path / "cache"), options, engine_builder=builder)
    artifact = _engine(pipeline, ocr_models.rec, "rec")  # rec keeps its float input x
    first, second = builder.jobs
    assert first.profiles == profiles_to_dict(big)
    assert second.profiles[0]["x"]["max"] == [8, 3, 48, 1280]  # max batch halved
    outcomes = [a["outcome"] for a in artifact.entry.metadata["attempts"]]
    assert outcomes == ["error", "passed"]
    assert artifact.entry.metadata["profiles"] == second.profiles


def test_out_of_memory_with_nothing_left_to_shrink_fails_once(ocr_models, tmp_path: Path) -> None:
    from paddleocr_trt.errors import OutOfMemoryError
    from paddleocr_trt.profiles import ShapeProfile

    tiny = [{"x": ShapeProfile((1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 96, 96))}]
    options = PipelineOptions(
        precision="fp32", build_timeout_s=60, profiles={ModelType.DETECTION: tiny}
    )
    builder = FakeEngineBuilder([OutOfMemoryError("no memory at all")])
    pipeline = _StubbedPipeline(EngineCache(tmp_path / "cache"), options, engine_builder=builder)
    with pytest.raises(EngineBuildError) as info:
        _engine(pipeline, ocr_models.det, "det")
    assert len(builder.jobs) == 1
    assert [a["error_type"] for a in info.value.attempts] == ["OutOfMemoryError"]
