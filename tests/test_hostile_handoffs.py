"""Issue 19, the last cache paths handed on by path: every one now goes through the cache's one
primitive (``cache/safedir.py``) from the root to the process that uses it.

1. TensorRT's timing cache: the build child inherits the ``timing/`` descriptor the parent
   walked to from the cache root; it never opens ``<root>/timing`` by path.
2. The rendered validation images: validation decodes the rendered bytes in memory (as PaddleX
   decodes a file); the files written under ``validation-images/`` are never read back.
3. A TensorRT-RTX build ahead of time: the child builds from the ONNX bytes the cache checked,
   never from the cache entry's path.

Real files, real links swapped in at the moment between the parent's check and the use, real
child processes. The cases that failed on the main of this change say ``main: failed``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures.cache import make_key
from fixtures.hostile import snapshot
from fixtures.trt_child import TENSORRT_VERSION

import paddleocr_trt
from paddleocr_trt.artifact import Artifact
from paddleocr_trt.cache import EngineCache
from paddleocr_trt.cache.safedir import SafeDir
from paddleocr_trt.engines.tensorrt.attempts import IsolatedEngineBuilder
from paddleocr_trt.errors import CacheError
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.pipeline import ArtifactPipeline, PipelineOptions

REPO = Path(paddleocr_trt.__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
#: the timing cache's file name in the build child (FakeTensorRTModule's version, GPU double)
TIMING_NAME = f"timing-{TENSORRT_VERSION}-Fake_GPU-sm89.cache"


def _write(tmp: Path, data: bytes, name: str = "model.onnx") -> Path:
    (tmp / name).write_bytes(data)
    return tmp / name


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


class _ReadyOnnxPipeline(ArtifactPipeline):
    """The recipe with step 1 stubbed: a real cache entry holding the real converted cls graph
    (no Paddle conversion, no validation against Paddle) and one small validation pair (the
    build child below builds; it does not validate)."""

    source_onnx: Path

    def onnx(self, model_dir: Any, model_type: Any) -> Artifact:
        data = self.source_onnx.read_bytes()
        key = make_key(model_type="classification", model_fingerprint="c" * 64)
        entry = self.cache.get_or_create(
            key, lambda tmp: (_write(tmp, data), {"input_names": ["x"]}), artifact_name="m.onnx"
        )
        return Artifact(entry, from_cache=True)

    def fused_validation_pairs(self, model_dir: Any, model_type: Any) -> list[Any]:
        from paddleocr_trt.comparator.fused import FusedPair

        base, fused = np.zeros((1, 3, 48, 192), np.float32), np.zeros((1, 48, 192, 3), np.uint8)
        return [FusedPair(base, fused)]


# -- 1. the timing cache: the child inherits the descriptor -----------------------------------


class _SwapThenBuild(IsolatedEngineBuilder):
    """The real isolated builder (a real child, ``attempt_worker.build_plan`` and the real
    timing cache code; FakeTensorRTModule for TensorRT, see fixtures/trt_child.py), with a swap
    made after the parent opened the timing dir and before the child starts."""

    target = "fixtures.trt_child:build_with_fake_tensorrt"

    def __init__(self, swap: Any) -> None:
        super().__init__(timeout_s=300)
        self.swap = swap

    def build_and_validate(self, job: Any) -> Any:
        self.swap()
        return super().build_and_validate(job)


@pytest.mark.parametrize("swap", ["cache root -> link", "timing/ -> link"])
def test_timing_cache_is_used_through_the_dir_the_parent_walked_to(
    swap: str, ocr_models: Any, onnx_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main: failed (the child opened ``<root>/timing`` by path: through a cache root swapped
    for a link it fed TensorRT the tactics planted in the link's target and merged its own into
    that file, next to a new lock; with ``timing/`` swapped for a link it refused the dir and
    every attempt failed)."""
    from paddleocr_trt.engines.tensorrt.artifact import engine_build, tensorrt_engine

    monkeypatch.setenv("PYTHONPATH", f"{REPO}:{TESTS}")  # the child imports fixtures.trt_child
    root, victim = tmp_path / "cache", tmp_path / "victim"
    EngineCache(victim).get_or_create(make_key(precision="bf16"), _write_bin, artifact_name="b")
    (_private_dir(victim / "timing") / TIMING_NAME).write_bytes(b"planted-tactic")
    (victim / "timing" / TIMING_NAME).chmod(0o600)
    before = snapshot(victim)
    held = tmp_path / ("moved" if swap.startswith("cache root") else "moved-timing")

    def do_swap() -> None:
        if swap.startswith("cache root"):
            root.rename(held)
            root.symlink_to(victim)
        else:
            (root / "timing").rename(held)
            (root / "timing").symlink_to(victim / "timing")

    pipeline = _ReadyOnnxPipeline(
        EngineCache(root), PipelineOptions(precision="fp32"), engine_builder=_SwapThenBuild(do_swap)
    )
    pipeline.source_onnx = onnx_models[ModelType.CLASSIFICATION].onnx_path
    graph = pipeline.graph(ocr_models.cls, "cls")
    build = engine_build(pipeline.options, graph)
    key = make_key(kind="engine", model_type="classification")
    with contextlib.suppress(CacheError):  # publishing through a linked root is refused
        tensorrt_engine(pipeline, graph, replace(build, key=key))
    assert snapshot(victim) == before
    timing = held / "timing" if swap.startswith("cache root") else held
    merged = (timing / TIMING_NAME).read_bytes().decode().split(";")
    assert merged and all(e.startswith("tactic-") for e in merged)  # the build's own, only
    assert oct((timing / TIMING_NAME).stat().st_mode & 0o777) == oct(0o600)


def _write_bin(tmp: Path) -> Path:
    return _write(tmp, os.urandom(256), "a.bin")


@pytest.mark.parametrize("plant", ["symlink", "hard link", "writable by others"])
def test_timing_cache_file_planted_in_the_held_dir_is_neither_fed_nor_written_through(
    plant: str, fake_trt: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The timing cache's own I/O (read, lock, merge, replace) through the held dir: a file
    planted at its name is not fed to TensorRT and its target keeps its bytes."""
    from paddleocr_trt.engines.tensorrt import builder

    fake_trt()
    timing = _private_dir(tmp_path / "timing")
    victim = tmp_path / "victim.cache"
    victim.write_bytes(b"other-users-tactic")
    victim.chmod(0o600)
    name = "timing-x.cache"
    if plant == "symlink":
        (timing / name).symlink_to(victim)
    elif plant == "hard link":
        os.link(victim, timing / name)
    else:
        (timing / name).write_bytes(b"other-users-tactic")
        (timing / name).chmod(0o666)
    with SafeDir.open_path(timing) as directory:
        assert builder.read_timing_cache(directory, name) is None
        assert "not using the TensorRT timing cache" in caplog.text
        builder.save_timing_cache(directory, name, b"tactic-1;tactic-2")
        assert builder.read_timing_cache(directory, name) == b"tactic-1;tactic-2"
    assert victim.read_bytes() == b"other-users-tactic"
    assert oct((timing / name).stat().st_mode & 0o777) == oct(0o600)


# -- 2. validation images: decoded from the rendered bytes, never read back by path -----------


def _attacker_images(written: dict[str, bytes], where: Path) -> Path:
    """Other pictures at the rendered images' names (the rendered ones, inverted): what a swap
    would make validation cut its inputs from."""
    import cv2

    _private_dir(where)
    for name, data in written.items():
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        ok, png = cv2.imencode(".png", 255 - decoded)
        assert ok
        (where / name).write_bytes(png.tobytes())
        (where / name).chmod(0o600)
    return where


def _inputs(pipeline: ArtifactPipeline, ocr_models: Any) -> list[np.ndarray]:
    """What the ONNX step (cls) and the engine step (det, fused pairs) validate on."""
    cls = pipeline.validation_inputs(ocr_models.cls, ModelType.CLASSIFICATION)
    det = pipeline.fused_validation_pairs(ocr_models.det, ModelType.DETECTION)
    return [*cls, *(a for pair in det for a in (pair.base, pair.fused))]


@pytest.mark.parametrize("swap", ["images replaced", "validation-images/ -> link", "hard links"])
def test_validation_inputs_come_from_the_rendered_bytes_not_the_written_files(
    swap: str, ocr_models: Any, tmp_path: Path
) -> None:
    """main: failed (validation read ``<root>/validation-images/<name>`` by path after writing
    it: the swapped-in pictures became the inputs a model was validated on)."""
    expected = _inputs(ArtifactPipeline(EngineCache(tmp_path / "clean")), ocr_models)
    root = tmp_path / "cache"
    pipeline = ArtifactPipeline(EngineCache(root))
    pipeline.validation_images()  # rendered and written
    images = root / "validation-images"
    written = {p.name: p.read_bytes() for p in images.iterdir()}
    assert len(written) >= 5
    evil = _attacker_images(written, tmp_path / "evil")
    if swap == "validation-images/ -> link":
        images.rename(tmp_path / "moved-away")
        images.symlink_to(evil)
    for name in written if swap != "validation-images/ -> link" else ():
        (images / name).unlink()
        if swap == "hard links":
            os.link(evil / name, images / name)
        else:
            (images / name).write_bytes((evil / name).read_bytes())
    got = _inputs(pipeline, ocr_models)
    assert len(got) == len(expected)
    for mine, clean in zip(got, expected, strict=True):
        assert mine.dtype == clean.dtype and np.array_equal(mine, clean)


def test_encoded_images_decode_exactly_as_paddlex_reads_the_file(
    sample_images: Any, ocr_models: Any
) -> None:
    """The in-memory decode (``comparator.inputs.decode_image``) is PaddleX's ``ReadImage`` on
    the same bytes, in every format it reads (the set has single-channel and RGBA files), and
    validation inputs built from either are bit-identical."""
    from paddlex.inference.common.reader import ReadImage

    from paddleocr_trt.comparator.inputs import (
        EncodedImage,
        build_validation_inputs,
        decode_image,
    )

    encoded = [EncodedImage(s.path.name, s.path.read_bytes()) for s in sample_images]
    for fmt in ("BGR", "RGB", "GRAY"):
        reader = ReadImage(format=fmt)
        for image, sample in zip(encoded, sample_images, strict=True):
            want = reader.read(str(sample.path))
            got = decode_image(image, fmt)
            assert got.dtype == want.dtype and np.array_equal(got, want), (fmt, image.name)
    paths = [s.path for s in sample_images]
    for mtype in ModelType:
        model = ocr_models.dir_for(mtype)
        by_path = build_validation_inputs(mtype, paths, model_dir=model, batch_sizes=(1, 4))
        by_bytes = build_validation_inputs(mtype, encoded, model_dir=model, batch_sizes=(1, 4))
        assert len(by_path) == len(by_bytes)
        assert all(np.array_equal(a, b) for a, b in zip(by_path, by_bytes, strict=True))
    with pytest.raises(ValueError, match="cannot be decoded"):
        decode_image(EncodedImage("truncated.png", encoded[0].data[:40]), "BGR")


# -- 3. a TensorRT-RTX build ahead of time builds the checked ONNX bytes ----------------------


def _other_graph(source: Path, where: Path) -> Path:
    """The same graph with other weights (a valid ONNX that would build): what a swap of the
    ONNX entry's file would make the child build in the model's name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    first = next(i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT)
    first.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(first), first.name))
    where.write_bytes(model.SerializeToString())
    where.chmod(0o600)
    return where


@pytest.mark.parametrize("swap", ["none", "other bytes", "symlink", "hard link"])
def test_rtx_build_ahead_of_time_builds_only_the_checked_onnx(
    swap: str, ocr_models: Any, onnx_models: Any, tmp_path: Path
) -> None:
    """main: failed (the build child opened the ONNX entry's path: a graph swapped in after the
    cache checked it was built with TensorRT-RTX and cached as the model's pending plan).
    ``none``: the real TensorRT-RTX build (no GPU needed) from the checked bytes."""
    from paddleocr_trt.cache.manifest import ArtifactChangedError
    from paddleocr_trt.engines.tensorrt.artifact import rtx_pending_engine
    from paddleocr_trt.engines.tensorrt.flavors import RTX

    cache = EngineCache(tmp_path / "cache")
    options = PipelineOptions(trt_flavor=RTX, targets=("sm89",), precision="fp32")
    pipeline = _ReadyOnnxPipeline(cache, options)
    pipeline.source_onnx = onnx_models[ModelType.CLASSIFICATION].onnx_path
    graph = pipeline.graph(ocr_models.cls, "cls")  # step 1's entry, checked
    if swap == "none":
        entry, info = rtx_pending_engine(pipeline, graph)
        assert entry.validation["status"] == "not-validated" and info["plan_bytes"] > 1000
        assert sorted(entry.manifest["files"]) == ["engine.plan"]  # source.onnx not kept
        return
    artifact = graph.onnx.path
    other = _other_graph(artifact, tmp_path / "other.onnx")
    other_sha = hashlib.sha256(other.read_bytes()).hexdigest()
    artifact.unlink()  # the swap, after the check
    if swap == "other bytes":
        artifact.write_bytes(other.read_bytes())
    elif swap == "symlink":
        artifact.symlink_to(other)
    else:
        os.link(other, artifact)
    with pytest.raises(ArtifactChangedError):
        rtx_pending_engine(pipeline, graph)
    assert [e.digest for e in cache.entries() if e.kind == "engine"] == []
    assert hashlib.sha256(other.read_bytes()).hexdigest() == other_sha
