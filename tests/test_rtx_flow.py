"""TensorRT-RTX control flow that needs a GPU to happen for real, driven with named doubles.

No TensorRT-RTX engine runs anywhere in this workplace (its runtime refuses the H200's compute
capability 9.0; this machine has no GPU). Real builds are in tests/test_rtx_builds.py. Here the
*runtime* is a test double (``fixtures/fake_tensorrt_rtx.py``) and the GPU's identity a
``device_info`` double, to check what the package does around them: the engine choice per
compute capability, the validity check before deserialising, kernel specialisation shown as a
stage and skipped on the second start through the runtime cache, and plans built ahead of time
validated on the target GPU before they are ever served.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from paddleocr_trt.backend.cuda import runtime as cuda_runtime
from paddleocr_trt.cache.store import EngineCache
from paddleocr_trt.engines.tensorrt import adapter, rtx_engine
from paddleocr_trt.engines.tensorrt import contexts as contexts_mod
from paddleocr_trt.engines.tensorrt import engine as trt_engine
from paddleocr_trt.engines.tensorrt import runner as runner_mod
from paddleocr_trt.engines.tensorrt.artifact import rtx_pending_engine
from paddleocr_trt.engines.tensorrt.config import BuildSettings
from paddleocr_trt.engines.tensorrt.flavors import RTX
from paddleocr_trt.engines.tensorrt.rtx_artifact import (
    engine_key,
    find_pending,
    promote_pending,
    rtx_status,
)
from paddleocr_trt.engines.tensorrt.runner import TensorRTRunner
from paddleocr_trt.engines.tensorrt.runtime_cache import RuntimeCacheFile, runtime_cache_dir
from paddleocr_trt.errors import CacheError
from paddleocr_trt.integration import decision
from paddleocr_trt.integration.request import TensorRTRequest
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.pipeline import ArtifactPipeline, PipelineOptions
from paddleocr_trt.settings import DEFAULT_ENGINES, parse_engines


def gpu_double(monkeypatch: pytest.MonkeyPatch, name: str, cc: tuple[int, int]) -> None:
    """Test double of the GPU: device_info answers ``name``/``cc``; CUDA counts as usable."""
    info = cuda_runtime.DeviceInfo(0, name, cc, 24 << 30, "GPU-double")
    monkeypatch.setattr(cuda_runtime, "device_info", lambda device_id: info)
    monkeypatch.setattr(trt_engine, "cuda_status", lambda: decision.READY)
    monkeypatch.setattr(rtx_engine, "cuda_status", lambda: decision.READY)
    _clear()


def _clear() -> None:
    rtx_engine.rtx_gpu_status.cache_clear()
    trt_engine.tensorrt_status.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_decisions():
    yield
    _clear()


REQUEST = TensorRTRequest(precision="fp16", device="gpu", engines=DEFAULT_ENGINES)


# -- the engine choice ---------------------------------------------------------------------------


def test_tensorrt_rtx_is_an_engine_name_and_follows_full_tensorrt_by_default() -> None:
    assert DEFAULT_ENGINES == ("tensorrt", "tensorrt-rtx")
    assert parse_engines("TensorRT-RTX, tensorrt") == ("tensorrt-rtx", "tensorrt")
    assert parse_engines("rtx,ort") == ("tensorrt-rtx", "onnxruntime")


def test_rtx_refuses_hopper_with_the_reason_and_the_remedy(monkeypatch) -> None:
    gpu_double(monkeypatch, "NVIDIA H200", (9, 0))
    status = decision.decide_engine("tensorrt-rtx", REQUEST, {"device_type": "gpu"})
    assert not status.ok and status.code == "rtx-unsupported-cc"
    assert status.message() == (
        "TensorRT-RTX does not run on compute capability 9.0 (H100/H200): "
        "install TensorRT 10.x/11.x"
    )


def test_rtx_serves_an_ada_card_when_installed(monkeypatch) -> None:
    gpu_double(monkeypatch, "NVIDIA GeForce RTX 4090", (8, 9))
    status = decision.decide_engine("tensorrt-rtx", REQUEST, {"device_type": "gpu"})
    assert status.ok, status.message()  # the real tensorrt_rtx is installed here


def test_rtx_card_without_tensorrt_rtx_gets_the_install_line(monkeypatch) -> None:
    gpu_double(monkeypatch, "NVIDIA GeForce RTX 3090", (8, 6))
    monkeypatch.setattr(adapter, "flavor_installed", lambda flavor: False)
    _clear()
    status = decision.decide_engine("tensorrt-rtx", REQUEST, {"device_type": "gpu"})
    assert status.message() == (
        "TensorRT-RTX is not installed (pip install 'paddleocr-trt[tensorrt-rtx]')"
    )


def test_build_runner_warns_once_per_step_then_runs_native(
    monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Plain use_tensorrt=True on an H200 without TensorRT: two steps, two exact warnings."""
    from paddleocr_trt.integration import request as trt_request
    from paddleocr_trt.integration import runner_factory
    from paddleocr_trt.log import reset_warn_once

    gpu_double(monkeypatch, "NVIDIA H200", (9, 0))
    missing = decision.Availability(
        False, "tensorrt-missing", "TensorRT is not installed", "pip install x"
    )
    monkeypatch.setattr(trt_engine, "tensorrt_status", lambda flavor="tensorrt": missing)
    monkeypatch.setattr(trt_request, "current", lambda: REQUEST)
    monkeypatch.setattr(runner_factory, "_ours", lambda runner: runner)
    reset_warn_once()
    native = SimpleNamespace(name="native")
    with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
        runner_factory.build_runner(
            lambda **kw: native,
            model_name="PP-OCRv4_mobile_det",
            model_dir=None,
            engine_config={"device_type": "gpu"},
        )
    said = [r.getMessage() for r in caplog.records if r.name.startswith("paddleocr_trt")]
    assert said == [
        "PP-OCRv4_mobile_det: TensorRT is not installed (pip install x); "
        "trying the TensorRT-RTX engine instead.",
        "PP-OCRv4_mobile_det: TensorRT-RTX does not run on compute capability 9.0 "
        "(H100/H200): install TensorRT 10.x/11.x; running native Paddle inference instead.",
    ]


# -- first use on an RTX GPU: validity, specialisation, runtime cache -------------------------


def test_invalid_plan_is_refused_before_deserialising(
    fake_trt_rtx, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_trt_rtx.validity = ("INVALID", 2 | 4)  # UNSUPPORTED_CC | OLD_CUDA_DRIVER
    with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
        assert adapter.deserialize_engine(b"fake-plan") is None
    assert ("deserialize",) not in fake_trt_rtx.calls
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "not built for this GPU's compute capability; the CUDA driver is too old" in said
    monkeypatch.setattr(runner_mod, "_device_scope", lambda device_id: _null())
    with pytest.raises(CacheError, match="invalid: not built for this GPU's compute capa"):
        TensorRTRunner(b"fake-plan", "det")


class ExecutorDouble:
    """Test double of the CUDA executor: a stream handle and nothing else."""

    stream_handle = 7

    def close(self) -> None:
        pass


def _runner(monkeypatch, cache_file: RuntimeCacheFile) -> TensorRTRunner:
    monkeypatch.setattr(contexts_mod, "_make_executor", lambda enqueuer, **kw: ExecutorDouble())
    monkeypatch.setattr(contexts_mod, "_free_device_memory", lambda device_id: None)
    monkeypatch.setattr(contexts_mod, "_device_scope", lambda device_id: _null())
    monkeypatch.setattr(runner_mod, "_device_scope", lambda device_id: _null())
    return TensorRTRunner(b"fake-plan", "det", runtime_cache=cache_file)


def _null():
    import contextlib

    return contextlib.nullcontext()


def test_second_start_skips_kernel_specialisation(
    fake_trt_rtx, monkeypatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = runtime_cache_dir(tmp_path / "cache", "TensorRT-RTX 1.7.1.116", "RTX 4090", 13)
    path = folder / "entry.cache"
    with caplog.at_level(logging.INFO, logger="paddleocr_trt"):
        first = _runner(monkeypatch, RuntimeCacheFile(path))
        first._new_executor(0)
    assert ("validity",) in fake_trt_rtx.calls
    assert ("specialise", "compiled") in fake_trt_rtx.calls
    assert path.read_bytes() == b"kernels:1"
    assert (path.stat().st_mode & 0o777) == 0o600 and (folder.stat().st_mode & 0o777) == 0o700
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "specialising kernels for this GPU" in said
    timings = first.timings_report()
    assert {"deserialize_seconds", "context_seconds", "runtime_cache_save_seconds"} <= set(timings)

    fake_trt_rtx.calls.clear()
    second = _runner(monkeypatch, RuntimeCacheFile(path))
    second._new_executor(0)
    assert ("specialise", "from runtime cache") in fake_trt_rtx.calls
    assert ("specialise", "compiled") not in fake_trt_rtx.calls
    assert "runtime_cache_load_seconds" in second.timings_report()


def test_a_foreign_runtime_cache_is_ignored_not_trusted(
    fake_trt_rtx, monkeypatch, tmp_path: Path
) -> None:
    from paddleocr_trt.cache.root import CacheRoot

    root = tmp_path / "cache"
    CacheRoot(root).open(create=True).close()  # a real, marked cache root
    path = runtime_cache_dir(root, "TensorRT-RTX 1.7.1.116", "RTX 4090", 13) / "x.cache"
    path.parent.mkdir(parents=True, mode=0o700)
    path.parent.parent.chmod(0o700)
    path.write_bytes(b"from another driver")
    path.chmod(0o600)
    runner = _runner(monkeypatch, RuntimeCacheFile(path))
    runner._new_executor(0)
    assert ("specialise", "compiled") in fake_trt_rtx.calls  # refused blob: compiled again
    path.chmod(0o666)  # writable by others: the cache's safety rules refuse to read it
    assert RuntimeCacheFile(path).load() is None


# -- built here, validated there ------------------------------------------------------------


class ValidatorDouble:
    """Test double of the child that validates a plan on the target GPU (cannot happen here)."""

    def __init__(self, passed: bool) -> None:
        self.passed = passed
        self.payloads: list[dict[str, Any]] = []

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.payloads.append(payload)
        report = {"passed": self.passed, "agreement": 0.999 if self.passed else 0.4}
        report["reason"] = None if self.passed else "fp16 boxes disagree"
        return {"report": report, "validity": "valid"}


@pytest.fixture(scope="module")
def built(ocr_models, tmp_path_factory) -> dict[str, Any]:
    """A real TensorRT-RTX det build ahead of time into a cache (no GPU involved), once."""
    cache = EngineCache(tmp_path_factory.mktemp("rtx-pending") / "cache")
    pipeline = ArtifactPipeline(cache, _options())
    det = ocr_models.dir_for(ModelType.DETECTION)
    entry, info = rtx_pending_engine(pipeline, pipeline.graph(det, ModelType.DETECTION))
    return {"root": cache.root, "digest": entry.digest, "info": info, "det": det}


def _options() -> PipelineOptions:
    return PipelineOptions(trt_flavor=RTX, targets=("sm86", "sm89"), precision="fp32")


@pytest.fixture
def pending(built, tmp_path: Path) -> dict[str, Any]:
    """A private copy of the cache holding the pending plan (tests change the cache)."""
    root = tmp_path / "cache"
    shutil.copytree(built["root"], root, symlinks=True)
    pipeline = ArtifactPipeline(EngineCache(root), _options())
    entry = pipeline.cache.info(built["digest"])
    return {**built, "pipeline": pipeline, "entry": entry}


def _no_gpu(device_id: int):
    raise RuntimeError("no CUDA device (test: no GPU here)")


def _validated_key(pending: dict[str, Any]):
    pipeline, det = pending["pipeline"], pending["det"]
    profiles = pending["entry"].metadata["profiles"]
    settings = BuildSettings(precision="fp32", targets=())
    graph = pipeline.graph(det, ModelType.DETECTION)  # the cached engine graph stage
    return engine_key(
        pipeline,
        det,
        ModelType.DETECTION,
        profiles,
        settings,
        pending=False,
        graph_key=graph.digest,
    )


def test_ahead_of_time_plan_is_cached_as_not_validated(pending) -> None:
    entry = pending["entry"]
    assert entry.artifact_path.stat().st_size == pending["info"]["plan_bytes"] > 100_000
    assert entry.validation["status"] == "not-validated" and entry.validation["passed"] is None
    assert entry.key_fields["compute_capability"] == "sm86,sm89"
    assert entry.key_fields["builder_settings"]["flavor"] == RTX
    assert "NOT VALIDATED" in (rtx_status(entry) or "")


def test_ahead_of_time_build_takes_the_cached_engine_graphs(tmp_path: Path, ocr_models) -> None:
    """A real fp16 TensorRT-RTX build ahead of time of the text-line orientation model: the
    child builds the graph stage's cached fp16 variant (``model.fp16.<its digest>.onnx``), never
    a graph it fused itself (``model.fp16-<tag>.fused.onnx``)."""
    cache = EngineCache(tmp_path / "cache")
    options = PipelineOptions(trt_flavor=RTX, targets=("sm89",), precision="fp16")
    pipeline = ArtifactPipeline(cache, options)
    cls = ocr_models.dir_for(ModelType.CLASSIFICATION)
    graph = pipeline.graph(cls, ModelType.CLASSIFICATION)
    _entry, info = rtx_pending_engine(pipeline, graph)
    variants = [
        e.digest for e in cache.entries() if e.kind == "graph" and e.key.precision == "fp16"
    ]
    assert len(variants) == 1, "the fp16 variant is a cached graph entry"
    assert Path(info["onnx_built"]).name == f"model.fp16.{variants[0]}.onnx", info


def test_pending_plan_is_validated_on_the_target_gpu_before_it_is_served(
    pending, monkeypatch
) -> None:
    pipeline = pending["pipeline"]
    gpu_double(monkeypatch, "NVIDIA GeForce RTX 4090", (8, 9))
    key = _validated_key(pending)
    assert pipeline.cache.get(key) is None  # never served as it is
    assert [e.digest for e in find_pending(pipeline.cache, key, (8, 9))] == [
        pending["entry"].digest
    ]
    assert find_pending(pipeline.cache, key, (12, 0)) == []  # not built for sm120
    validator = ValidatorDouble(passed=True)
    promoted = promote_pending(pipeline, pending["det"], ModelType.DETECTION, key, validator)
    assert promoted is not None and validator.payloads[0]["flavor"] == RTX
    served = pipeline.cache.get(key)
    assert served is not None and served.validation["passed"] is True
    assert served.metadata["validated_from"] == pending["entry"].digest
    assert "validated on NVIDIA GeForce RTX 4090 (sm 8.9)" in (rtx_status(served) or "")


class SwappingValidatorDouble(ValidatorDouble):
    """A validator double that reads the plan it is given, then swaps the pending entry's plan
    for other bytes: the moment between validation and publication."""

    def __init__(self, pending_plan: Path) -> None:
        super().__init__(passed=True)
        self.pending_plan = pending_plan
        self.validated: bytes | None = None

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.validated = Path(payload["plan"]).read_bytes()
        self.pending_plan.write_bytes(b"\0" * len(self.validated))
        return super().validate(payload)


def test_the_plan_published_is_the_plan_validated(pending, monkeypatch) -> None:
    """Issue 19. main: failed (the pending plan was validated by path, then copied by path:
    bytes swapped in between were published as validated)."""
    pipeline = pending["pipeline"]
    gpu_double(monkeypatch, "NVIDIA GeForce RTX 4090", (8, 9))
    key = _validated_key(pending)
    original = pending["entry"].artifact_path.read_bytes()
    validator = SwappingValidatorDouble(pending["entry"].artifact_path)
    promoted = promote_pending(pipeline, pending["det"], ModelType.DETECTION, key, validator)
    assert promoted is not None
    served = pipeline.cache.get(key, verify=True)
    assert served is not None
    assert validator.validated == original
    assert served.artifact_path.read_bytes() == original


def test_pending_plan_that_fails_validation_is_dropped_never_served(pending, monkeypatch) -> None:
    pipeline = pending["pipeline"]
    gpu_double(monkeypatch, "NVIDIA GeForce RTX 4090", (8, 9))
    key = _validated_key(pending)
    promoted = promote_pending(
        pipeline, pending["det"], ModelType.DETECTION, key, ValidatorDouble(passed=False)
    )
    assert promoted is None
    assert pipeline.cache.get(key) is None
    assert find_pending(pipeline.cache, key, (8, 9)) == []


def test_selftest_builds_det_for_real_says_it_cannot_run_here_and_exits_1(
    built, tmp_path: Path
) -> None:
    """``doctor --selftest`` with TensorRT-RTX and no usable GPU: a real det build (the ONNX
    conversion reused from the cache), its time and size, a plain "cannot run here", exit 1."""
    import os
    import subprocess
    import sys

    root = tmp_path / "cache"
    shutil.copytree(built["root"], root, symlinks=True)
    args = ["doctor", "--selftest", "--cache-dir", str(root), "--det-model", str(built["det"])]
    proc = subprocess.run(
        [sys.executable, "-m", "paddleocr_trt.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    out = proc.stdout
    assert "det build     built: fp16 plan for sm80,sm86,sm89,sm120" in out, out
    assert " MB, build " in out and "(from cache)" not in out, out
    assert "det run       NOT RUN: the engine cannot run here (no usable CUDA GPU" in out, out
    assert "built, not run, and is not validated" in out
    assert "passed" not in out


def _cli(*args: str) -> Any:
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "paddleocr_trt.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


def test_optimize_builds_for_targets_without_a_gpu_and_says_not_validated(
    built, tmp_path: Path
) -> None:
    import json

    root = tmp_path / "cache"
    shutil.copytree(built["root"], root, symlinks=True)
    out = tmp_path / "det.engine"
    args = ["optimize", str(built["det"]), "--engine", "tensorrt-rtx"]
    args += ["--target", "sm86,sm89,sm120", "-o", str(out), "--cache-dir", str(root), "--json"]
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["validated"] is False and data["targets"] == ["sm86", "sm89", "sm120"]
    assert data["validation"].startswith("NOT VALIDATED yet: it cannot run here")
    assert out.stat().st_size == data["plan_bytes"] > 100_000
    again = _cli(*args)  # the pending entry is reused, still not validated
    assert again.returncode == 0 and json.loads(again.stdout)["from_cache"] is True
    listing = _cli("cache", "list", "--cache-dir", str(root))
    assert "for sm120,sm86,sm89: NOT VALIDATED" in listing.stdout or (
        "for sm86,sm89,sm120: NOT VALIDATED" in listing.stdout
    ), listing.stdout


def test_optimize_target_needs_the_rtx_flavor(built) -> None:
    proc = _cli("optimize", str(built["det"]), "--target", "sm89")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: --target needs --engine tensorrt-rtx (full TensorRT builds for the GPU it runs on)"
    )
    bad = _cli("optimize", str(built["det"]), "--engine", "tensorrt-rtx", "--target", "sm90")
    assert bad.returncode == 2 and "unknown compute capability target 'sm90'" in bad.stderr


@pytest.mark.parametrize(
    ("name", "cc", "driver", "flavor", "install"),
    [
        (
            "NVIDIA GeForce RTX 4090",
            "8.9",
            "13.0",
            RTX,
            "pip install 'paddleocr-trt[tensorrt-rtx]'",
        ),
        ("NVIDIA GeForce RTX 3080", "8.6", "12.4", RTX, "[tensorrt-rtx-cu12]"),
        ("NVIDIA RTX PRO 6000 Blackwell", "12.0", "13.0", RTX, "[tensorrt-rtx]"),
        ("NVIDIA H200", "9.0", "13.0", "tensorrt", "pip install 'paddleocr-trt[tensorrt]'"),
        ("NVIDIA L4", "8.9", "12.8", "tensorrt", "[tensorrt-cu12]"),
        ("Tesla T4", "7.5", "12.2", "tensorrt", "[tensorrt-cu12]"),
    ],
)
def test_doctor_names_the_flavor_that_fits_gpu_and_driver(
    name: str, cc: str, driver: str, flavor: str, install: str
) -> None:
    from paddleocr_trt.cli.doctor_flavor import flavor_advice

    cuda = {"devices": [{"name": name, "compute_capability": cc}]}
    advice = flavor_advice(cuda, {"driver_cuda": driver})
    assert advice["flavor"] == flavor, advice
    assert install in advice["install"], advice
    assert name in advice["why"] and driver in advice["why"]
