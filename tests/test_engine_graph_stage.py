"""The engine graph as a cached stage of the recipe (issue 18): model -> validated ONNX -> engine
graph (kind "graph") -> engine artifact.

Real components throughout: the PP-OCRv4 orientation model from the rapidocr wheel, converted
and validated against native Paddle by the real recipe, fused by the real fusion code, ONNX
Runtime sessions on the CPU, a real cache on disk and the real ``cache`` CLI.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from paddleocr_trt import engine_graph as engine_graph_module
from paddleocr_trt.cache.store import EngineCache
from paddleocr_trt.cli import cache_cmd
from paddleocr_trt.engine_graph import GRAPH_ARTIFACT, graph_key
from paddleocr_trt.fusion import graphs
from paddleocr_trt.fusion.artifacts import FUSED_GRAPH, write_fused_onnx
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.pipeline import ArtifactPipeline, PipelineOptions

CLS = ModelType.CLASSIFICATION


def _options(sample_images) -> PipelineOptions:
    return PipelineOptions(precision="fp32", validation_images=(sample_images[0].path,))


@pytest.fixture(scope="module")
def made(ocr_models, sample_images, tmp_path_factory) -> dict[str, Any]:
    """A cache where the real recipe made the cls model's validated ONNX and its engine graph."""
    root = tmp_path_factory.mktemp("graph-stage") / "cache"
    pipeline = ArtifactPipeline(EngineCache(root), _options(sample_images))
    graph = pipeline.graph(ocr_models.cls, CLS)
    assert graph.fused is not None and not graph.fused.from_cache  # fused now, then cached
    return {"root": root, "digest": graph.fused.entry.digest, "bytes": graph.read()}


@pytest.fixture
def cache_copy(made, tmp_path: Path) -> Path:
    """A private copy of the made cache (tests change it)."""
    root = tmp_path / "cache"
    shutil.copytree(made["root"], root, symlinks=True)
    return root


def _pipeline(root: Path, sample_images) -> ArtifactPipeline:
    return ArtifactPipeline(EngineCache(root), _options(sample_images))


def _no_fusion(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("the engine graph was fused again")


def test_a_second_start_reuses_the_cached_graph(
    made, cache_copy, ocr_models, sample_images, monkeypatch
) -> None:
    entry_dir = cache_copy / "graph" / made["digest"]
    manifest_before = (entry_dir / "manifest.json").read_bytes()
    monkeypatch.setattr(graphs, "fuse_model", _no_fusion)
    graph = _pipeline(cache_copy, sample_images).graph(ocr_models.cls, CLS)  # a new process's
    assert graph.fused is not None and graph.fused.from_cache
    assert graph.fused.entry.digest == made["digest"] == graph.digest
    assert graph.read() == made["bytes"]
    assert (entry_dir / "manifest.json").read_bytes() == manifest_before  # left as it was
    manifest = json.loads(manifest_before)
    assert manifest["key"]["kind"] == "graph" and manifest["artifact"] == GRAPH_ARTIFACT
    assert manifest["validation"]["passed"] is True
    onnx_digest = manifest["metadata"]["onnx_entry"]
    assert manifest["key"]["builder_settings"] == {"onnx_key": onnx_digest, "graph": FUSED_GRAPH}


def test_the_cached_graph_is_what_fusion_makes_of_the_validated_onnx(
    made, cache_copy, ocr_models, sample_images, tmp_path
) -> None:
    """The bytes engines get are exactly those the engine step used to fuse for itself."""
    pipeline = _pipeline(cache_copy, sample_images)
    onnx = pipeline.onnx(ocr_models.cls, CLS)
    model = pipeline.resolve(ocr_models.cls, CLS)
    fresh = tmp_path / "fresh.onnx"
    (tmp_path / "source.onnx").write_bytes(onnx.entry.read_artifact())
    meta = write_fused_onnx(CLS, tmp_path / "source.onnx", model, fresh)
    assert fresh.read_bytes() == made["bytes"]
    graph = pipeline.graph(ocr_models.cls, CLS)
    written = graph.write(tmp_path / "written.onnx")
    assert written == meta and (tmp_path / "written.onnx").read_bytes() == made["bytes"]


def test_a_corrupt_graph_entry_is_detected_and_rebuilt_with_one_warning(
    made, cache_copy, ocr_models, sample_images, caplog
) -> None:
    artifact = cache_copy / "graph" / made["digest"] / GRAPH_ARTIFACT
    artifact.write_bytes(b"\0" * artifact.stat().st_size)  # same size: only the hash can tell
    with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
        graph = _pipeline(cache_copy, sample_images).graph(ocr_models.cls, CLS)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "is unusable" in warned[0] and "sha256" in warned[0], warned
    assert graph.fused is not None and not graph.fused.from_cache  # fused again
    assert graph.read() == made["bytes"] == artifact.read_bytes()


def _cli(capsys, *args: str) -> tuple[int, Any]:
    parser = argparse.ArgumentParser(prog="paddleocr-trt")
    cache_cmd.register(parser.add_subparsers(dest="command"))
    parsed = parser.parse_args(["cache", *args])
    code = parsed.func(parsed)
    out = capsys.readouterr().out
    return code, json.loads(out) if "--json" in args else out


def test_cache_list_info_clear_and_prune_know_the_graph_kind(
    made, cache_copy, ocr_models, sample_images, capsys
) -> None:
    code, data = _cli(capsys, "list", "--json", "--cache-dir", str(cache_copy))
    assert code == 0
    kinds = {e["kind"]: e for e in data["entries"]}
    assert set(kinds) == {"onnx", "graph"} and kinds["graph"]["digest"] == made["digest"]
    assert kinds["graph"]["ok"]
    code, text = _cli(capsys, "list", "--cache-dir", str(cache_copy))
    assert code == 0 and any(
        line.startswith(made["digest"]) and " graph " in line for line in text.splitlines()
    ), text
    code, info = _cli(capsys, "info", made["digest"][:10], "--json", "--cache-dir", str(cache_copy))
    assert code == 0 and info["kind"] == "graph" and info["ok"]

    code, cleared = _cli(
        capsys, "clear", made["digest"][:10], "--json", "--cache-dir", str(cache_copy)
    )
    assert code == 0 and cleared["removed"] == [made["digest"]]
    assert not (cache_copy / "graph" / made["digest"]).exists()
    assert (cache_copy / "onnx").is_dir() and any((cache_copy / "onnx").iterdir())
    graph = _pipeline(cache_copy, sample_images).graph(ocr_models.cls, CLS)  # made again
    assert graph.fused is not None and not graph.fused.from_cache
    assert graph.read() == made["bytes"]

    onnx_digests = [p.name for p in (cache_copy / "onnx").iterdir()]
    pruned = EngineCache(cache_copy).prune(0)  # everything unused since now: the graph's too
    assert sorted(pruned) == sorted([made["digest"], *onnx_digests]), pruned
    code, data = _cli(capsys, "list", "--json", "--cache-dir", str(cache_copy))
    assert data["entries"] == []


def test_export_and_import_carry_the_graph_entry(made, cache_copy, tmp_path) -> None:
    from paddleocr_trt.cache.bundle import export_bundle, import_bundle

    report = export_bundle(EngineCache(cache_copy), tmp_path / "bundle.tar.gz")
    assert made["digest"] in report.exported, report
    other = EngineCache(tmp_path / "other")
    imported = import_bundle(other, tmp_path / "bundle.tar.gz")
    assert made["digest"] in imported.imported, imported
    (entry,) = [e for e in other.entries() if e.kind == "graph"]
    assert entry.read_artifact() == made["bytes"]


def test_engine_keys_carry_the_graph_stage_key(
    made, cache_copy, ocr_models, sample_images, monkeypatch
) -> None:
    """A new graph recipe (``FUSED_GRAPH``) re-keys the graph stage and every engine on it."""
    from paddleocr_trt.engines.onnxruntime.artifact import onnxruntime_key

    pipeline = _pipeline(cache_copy, sample_images)
    onnx = pipeline.onnx(ocr_models.cls, CLS)
    graph = pipeline.graph(ocr_models.cls, CLS)
    assert graph.key == graph_key(onnx.entry.key)
    ort = onnxruntime_key(pipeline, graph, "CPUExecutionProvider")
    assert ort.builder_settings["graph_key"] == graph.digest

    monkeypatch.setattr(engine_graph_module, "FUSED_GRAPH", "fused-next-test")
    monkeypatch.setattr(graphs, "fuse_model", _counting(graphs.fuse_model, calls := []))
    changed = pipeline.graph(ocr_models.cls, CLS)
    assert changed.version == "fused-next-test" and changed.digest != graph.digest
    assert changed.fused is not None and not changed.fused.from_cache and len(calls) == 1
    ort_changed = onnxruntime_key(pipeline, changed, "CPUExecutionProvider")
    assert ort_changed.digest != ort.digest
    assert ort_changed.builder_settings["graph_key"] == changed.digest


def test_tensorrt_rtx_keys_carry_the_graph_stage_key(made, cache_copy, ocr_models, sample_images):
    from paddleocr_trt.engines.tensorrt.config import BuildSettings
    from paddleocr_trt.engines.tensorrt.rtx_artifact import engine_key

    pipeline = _pipeline(cache_copy, sample_images)
    settings = BuildSettings(precision="fp32", targets=("sm89",))
    keys = [
        engine_key(pipeline, ocr_models.cls, CLS, (), settings, pending=True, graph_key=digest)
        for digest in (made["digest"], "0" * 24)
    ]
    assert keys[0].builder_settings["graph_key"] == made["digest"]
    assert keys[0].digest != keys[1].digest


def _counting(func, calls: list) -> Any:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return func(*args, **kwargs)

    return counted


@pytest.mark.slow
def test_the_onnxruntime_engine_takes_the_graph_stage_bytes(
    made, cache_copy, ocr_models, sample_images, monkeypatch
) -> None:
    """ONNX Runtime's artifact is the graph stage's bytes, validated under its provider; made
    without fusing again, and keyed and recorded with the graph entry it came from."""
    from paddleocr_trt.engines import registry
    from paddleocr_trt.engines.contract import Target

    monkeypatch.setattr(graphs, "fuse_model", _no_fusion)
    pipeline = _pipeline(cache_copy, sample_images)
    artifact = pipeline.artifact("onnxruntime", ocr_models.cls, CLS, Target("cpu", 0))
    assert artifact is not None and not artifact.from_cache
    assert artifact.entry.read_artifact() == made["bytes"]
    assert artifact.entry.metadata["graph_entry"] == made["digest"]
    assert artifact.entry.key_fields["builder_settings"]["graph_key"] == made["digest"]
    assert artifact.validation["passed"] and artifact.validation["fused"]["passed"]
    again = registry.engine("onnxruntime").prepare(
        pipeline, pipeline.graph(ocr_models.cls, CLS), Target("cpu", 0)
    )
    assert again.from_cache and again.entry.digest == artifact.entry.digest


def test_a_graph_fusion_refuses_is_remembered_not_fused_again_until_cleared(
    made, cache_copy, ocr_models, sample_images, monkeypatch, capsys
) -> None:
    from paddleocr_trt.pipeline import RememberedFailureError

    shutil.rmtree(cache_copy / "graph")  # the ONNX step hits; the graph must be made
    calls: list[Any] = []

    def refuses(model_type: Any, *_args: Any, **_kwargs: Any) -> Any:
        calls.append(model_type)
        raise ValueError("expects one image input, got ['x', 'y']")

    monkeypatch.setattr(graphs, "fuse_model", refuses)
    with pytest.raises(ValueError, match="one image input"):
        _pipeline(cache_copy, sample_images).graph(ocr_models.cls, CLS)
    with pytest.raises(RememberedFailureError, match="one image input"):
        _pipeline(cache_copy, sample_images).graph(ocr_models.cls, CLS)  # a second start
    assert len(calls) == 1
    code, data = _cli(capsys, "list", "--json", "--cache-dir", str(cache_copy))
    (failure,) = data["failures"]
    assert failure["kind"] == "graph" and failure["digest"] == made["digest"]
    code, cleared = _cli(
        capsys, "clear", made["digest"][:12], "--json", "--cache-dir", str(cache_copy)
    )
    assert code == 0 and cleared["failures_removed"] == [made["digest"]]
    monkeypatch.undo()
    graph = _pipeline(cache_copy, sample_images).graph(ocr_models.cls, CLS)  # tried again
    assert graph.read() == made["bytes"]


# -- TensorRT's fp16 variants: graph entries of their own ------------------------------------------


def test_fp16_variants_are_cached_graph_entries_per_set_of_pins(
    made, cache_copy, ocr_models, sample_images, tmp_path, monkeypatch
) -> None:
    from paddleocr_trt.engine_graph import make_fp16_variant
    from paddleocr_trt.fusion.artifacts import engine_onnx

    pipeline = _pipeline(cache_copy, sample_images)
    graph = pipeline.graph(ocr_models.cls, CLS)
    first = make_fp16_variant(pipeline.cache, graph)
    assert not first.from_cache and first.entry.key.precision == "fp16"
    # what the attempt's child used to make for itself, byte for byte
    (tmp_path / "source.onnx").write_bytes(graph.onnx.entry.read_artifact())
    _, fresh16 = engine_onnx(CLS, graph.model, tmp_path / "source.onnx", tmp_path, fp16_onnx=True)
    assert first.entry.read_artifact() == fresh16.read_bytes()

    monkeypatch.setattr(graphs, "fuse_model", _no_fusion)
    again = make_fp16_variant(_pipeline(cache_copy, sample_images).cache, graph)
    assert again.from_cache and again.entry.digest == first.entry.digest
    monkeypatch.undo()

    import onnx

    node = next(n.name for n in onnx.load(str(graph.onnx.path)).graph.node if n.name)
    pinned = make_fp16_variant(pipeline.cache, graph, (node,))
    assert pinned.entry.digest not in (first.entry.digest, graph.digest)
    assert pinned.entry.key.builder_settings["keep_fp32_nodes"] == [node]
    assert pinned.entry.key.builder_settings["onnx_key"] == graph.key.builder_settings["onnx_key"]
    listed = {e.digest: e.key.precision for e in pipeline.cache.entries() if e.kind == "graph"}
    assert listed == {graph.digest: "fp32", first.entry.digest: "fp16", pinned.entry.digest: "fp16"}


class _RecordingBuilder:
    """Test double of TensorRT's build + validate (no TensorRT here): records each attempt's
    job and the fp16 graph bytes it was handed; fails the first attempt, passes the next."""

    def __init__(self) -> None:
        self.jobs: list[Any] = []
        self.fp16_bytes: list[bytes | None] = []
        self.fused_bytes: list[bytes | None] = []

    def build_and_validate(self, job: Any) -> Any:
        from paddleocr_trt.engines.tensorrt.attempts import AttemptResult

        self.jobs.append(job)
        fused16 = job.fused16_path
        self.fp16_bytes.append(fused16.read_bytes() if fused16 else None)
        self.fused_bytes.append(job.fused_path.read_bytes() if job.fused_path else None)
        job.plan_path.write_bytes(b"plan")
        agreement = 0.5 if len(self.jobs) == 1 else 0.999
        report = {"passed": agreement > 0.99, "agreement": agreement, "reason": "test"}
        return AttemptResult(report, build_seconds=0.0, tensorrt_version="test", extra={})


def test_tensorrt_fp16_attempts_get_their_variant_from_the_graph_stage(
    made, cache_copy, ocr_models, sample_images, monkeypatch
) -> None:
    """Where the TensorRT loaded here builds FP16 from an fp16 graph, each FP16 attempt's child
    gets the cached variant for its FP32 pins and the cached fp32 graph; it fuses nothing."""
    from dataclasses import replace

    from fixtures.cache import make_key

    from paddleocr_trt.engine_graph import fp16_variant_key
    from paddleocr_trt.engines.tensorrt import adapter
    from paddleocr_trt.engines.tensorrt.artifact import engine_build, tensorrt_engine

    monkeypatch.setattr(adapter, "load_tensorrt", lambda flavor=None: object())
    monkeypatch.setattr(adapter, "fp16_needs_fp16_onnx", lambda trt=None: True)  # 10.12+, 11.x
    options = replace(_options(sample_images), precision="fp16")
    builder = _RecordingBuilder()
    pipeline = ArtifactPipeline(EngineCache(cache_copy), options, engine_builder=builder)
    graph = pipeline.graph(ocr_models.cls, CLS)
    build = engine_build(options, graph)
    key = make_key(kind="engine", precision="fp16", model_type=CLS.value)  # no GPU to key on
    artifact = tensorrt_engine(pipeline, graph, replace(build, key=key))
    assert artifact.entry.metadata["attempts"][-1]["outcome"] == "passed"
    fp16_jobs = [
        (job, data)
        for job, data in zip(builder.jobs, builder.fp16_bytes, strict=True)
        if job.settings.precision == "fp16"
    ]
    assert fp16_jobs, builder.jobs
    pins = [len(job.settings.fp32_layers) for job, _ in fp16_jobs]
    assert pins[0] == 0 and pins[1] > 0, pins  # FP16, then FP16 with sensitive nodes pinned
    for job, data in fp16_jobs:
        pins = tuple(job.settings.fp32_layers)
        entry = pipeline.cache.get(fp16_variant_key(graph.key, pins))
        assert entry is not None and data == entry.read_artifact(), pins
    assert builder.fused_bytes == [made["bytes"]] * len(builder.jobs)  # the cached fp32 graph
