"""Issue 19, point 1: one primitive (``SafeDir``) for every path the cache reads, writes,
renames or deletes, and the bytes the cache checked are the bytes an engine loads.

Real files, real symbolic and hard links planted at the exact moment between a check and its
use (through a hook where the moment is inside the cache), real ONNX Runtime sessions, a real
child process writing through the build dir's descriptor path. The cases that failed on the main
of this change say ``main: failed`` in their docstrings.
"""

from __future__ import annotations

import ast
import contextlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures.cache import make_key
from fixtures.hostile import snapshot

import paddleocr_trt
from paddleocr_trt.artifact import Artifact
from paddleocr_trt.cache import EngineCache
from paddleocr_trt.cache.manifest import ArtifactChangedError
from paddleocr_trt.cache.safedir import SafeDir
from paddleocr_trt.cache.safety import UntrustedPathError
from paddleocr_trt.errors import CacheError

CACHE_PACKAGE = Path(paddleocr_trt.__file__).resolve().parent / "cache"


@contextlib.contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True)
    path.chmod(0o700)
    return path


# -- 1. SafeDir.open_file(create=True): what the lock file needs, in the primitive -------------


def test_open_file_create_is_exclusive_private_and_never_truncates(tmp_path: Path) -> None:
    """main: failed (``open_file`` had no ``create``; the lock opened its files itself)."""
    root = private_dir(tmp_path / "d")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"years of work")
    with umask(0), SafeDir.open_path(root) as d:
        fd = d.open_file("new.lock", os.O_RDWR, create=True)  # made: 0600 under umask 000
        os.close(fd)
        assert (root / "new.lock").stat().st_mode & 0o777 == 0o600
        (root / "ours.lock").write_bytes(b"x" * 4096)
        (root / "ours.lock").chmod(0o600)
        os.close(d.open_file("ours.lock", os.O_RDWR, create=True))  # there: opened, kept
        assert (root / "ours.lock").read_bytes() == b"x" * 4096
        with pytest.raises(ValueError, match="O_TRUNC"):
            d.open_file("ours.lock", os.O_RDWR | os.O_TRUNC, create=True)
        assert (root / "ours.lock").stat().st_size == 4096
        os.link(victim, root / "hard.lock")
        with pytest.raises(UntrustedPathError, match="hard links"):
            d.open_file("hard.lock", os.O_RDWR, create=True)
        (root / "soft.lock").symlink_to(victim)
        with pytest.raises(UntrustedPathError, match="symbolic link"):
            d.open_file("soft.lock", os.O_RDWR, create=True)
    assert victim.read_bytes() == b"years of work"


# -- 1/2/5. nothing in the cache package opens, renames or deletes by path on its own ----------

_FS_CALLS = {"open", "replace", "rename", "unlink", "remove", "rmdir", "mkdir", "makedirs"}
_PATH_METHODS = {"write_text", "read_text", "mkdir", "touch", "symlink_to", "hardlink_to"}
#: (module, function, call) -> why it is not a cache path reached through SafeDir
ALLOWED = {
    # the root itself: created (0700, parents too) before there is a descriptor to walk from
    ("root.py", "_create", "os.mkdir"): "the cache root and its missing parents",
    # a creator's fresh files: opened by fwalk's dir fd with O_NOFOLLOW and made 0600 first
    # (open_file would refuse a file a converter made 0666 under umask 000 before sealing it)
    ("build.py", "_seal", "os.open"): "the build's own files, through fwalk's dir descriptors",
    # a creator's artifact in a subdir of the build dir: the path is SafeDir.fd_path (see build.py)
    ("build.py", "_run_create", "os.replace"): "inside the held build dir, via fd_path",
    # bundle import writes where build_entry tells its creator to (SafeDir.fd_path, see build.py)
    ("bundle.py", "_copy_checked", "os.open"): "inside the held build dir, via fd_path",
    ("bundle.py", "_copy_checked", ".mkdir"): "inside the held build dir, via fd_path",
    # the user's own archive (``cache export OUT``), not a cache path
    ("bundle.py", "export_bundle", "os.replace"): "the user's output archive",
    ("bundle.py", "export_bundle", ".mkdir"): "the user's output archive's folder",
    ("bundle.py", "export_bundle", ".unlink"): "the user's output archive's temp file",
    # user outputs (``-o``), rendered sample images: outside the cache by definition
    ("safety.py", "open_nofollow", "os.open"): "kept for callers outside the cache",
    ("safety.py", "create_exclusive", "os.open"): "user output paths",
    ("safety.py", "write_bytes_atomic", "os.replace"): "user output paths, sample images",
    ("safety.py", "write_bytes_atomic", "os.unlink"): "user output paths, sample images",
    ("safety.py", "fsync_dir", "os.open"): "user output paths",
    ("safety.py", "copy_file_atomic", "open"): "user output paths (-o)",
    ("safety.py", "copy_file_atomic", "os.replace"): "user output paths (-o)",
    ("safety.py", "copy_file_atomic", "os.unlink"): "user output paths (-o)",
    ("safety.py", "copy_file_atomic", ".mkdir"): "user output paths (-o)",
    # the user's model files (hashed for the key), never cache files
    ("fsutil.py", "sha256_file", "open"): "model files the user gave",
    ("fsutil.py", "process_start_time", ".read_text"): "/proc/<pid>/stat, not a file",
    # scratch dirs of tests and demos, documented as never a cache path
    ("fsutil.py", "remove_tree", "shutil.rmtree"): "scratch dirs (never a cache path)",
    ("fsutil.py", "remove_tree", ".unlink"): "scratch dirs (never a cache path)",
}


def _calls(path: Path) -> set[tuple[str, str, str]]:
    """(module, enclosing function, call) for every file-system call made by path."""
    found: set[tuple[str, str, str]] = set()

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = function
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = child.name
            if isinstance(child, ast.Call):
                func = child.func
                call = None
                if isinstance(func, ast.Name) and func.id in ("open", "open_nofollow"):
                    call = func.id  # open_nofollow: protects the last component only
                elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                    if func.value.id == "os" and func.attr in _FS_CALLS:
                        call = f"os.{func.attr}"
                    elif func.value.id == "shutil":
                        call = f"shutil.{func.attr}"
                if call is None and isinstance(func, ast.Attribute):
                    if func.attr in _PATH_METHODS or (
                        func.attr == "unlink" and any(k.arg == "missing_ok" for k in child.keywords)
                    ):
                        call = f".{func.attr}"
                    elif func.attr == "unlink" and not child.args:
                        call = ".unlink"  # Path.unlink(); SafeDir.unlink takes a name
                if call is not None:
                    found.add((path.name, name, call))
            visit(child, name)

    visit(ast.parse(path.read_text()), "<module>")
    return found


def test_the_cache_package_touches_files_only_through_safedir() -> None:
    """main: failed (lock.py opened lock files itself; bundle.py read entries by path through
    ``open_nofollow``, which follows a linked kind or entry dir)."""
    unexplained, seen = [], set()
    for path in sorted(CACHE_PACKAGE.glob("*.py")):
        for module, function, call in sorted(_calls(path)):
            seen.add((module, function, call))
            if module == "safedir.py" or (module, function, call) in ALLOWED:
                continue  # safedir.py is the primitive
            unexplained.append(f"{module}:{function}: {call}")
    assert not unexplained, "file-system calls by path outside SafeDir:\n" + "\n".join(unexplained)
    stale = sorted(set(ALLOWED) - seen)  # the list only shrinks: drop what no longer occurs
    assert not stale, f"ALLOWED names calls that are gone: {stale}"


# -- 2. bundle export reads what it checked, through descriptors ------------------------------


def _entry(cache: EngineCache, key: Any, payload: bytes) -> Any:
    def create(tmp: Path) -> Path:
        (tmp / "model.onnx").write_bytes(payload)
        return tmp / "model.onnx"

    return cache.get_or_create(
        key, create, artifact_name="model.onnx", validate_fn=lambda _p: {"passed": True}
    )


@pytest.mark.parametrize("swap", ["kind dir -> link", "artifact rewritten"])
def test_bundle_export_never_archives_what_it_did_not_check(
    swap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main: failed (the kind dir swapped for a link after the check: the victim's bytes went
    into the bundle; a rewritten artifact was archived under its old sha256)."""
    from paddleocr_trt.cache import bundle

    key = make_key()
    mine = EngineCache(tmp_path / "mine")
    _entry(mine, key, b"checked bytes " * 100)
    victim = EngineCache(tmp_path / "victim")
    _entry(victim, key, b"victim secret " * 100)
    real_check = bundle.check_entry

    def check_then_swap(*args: Any, **kwargs: Any) -> Any:
        checked = real_check(*args, **kwargs)  # the check passed; now the swap
        kind_dir = mine.root / "onnx"
        if swap == "kind dir -> link":
            kind_dir.rename(tmp_path / "moved-away")
            kind_dir.symlink_to(victim.root / "onnx")
        else:
            artifact = kind_dir / key.digest / "model.onnx"
            artifact.write_bytes(b"other bytes!!" * 100 + b"x" * 100)
        return checked

    monkeypatch.setattr(bundle, "check_entry", check_then_swap)
    out = tmp_path / "out.tar.gz"
    with pytest.raises(CacheError):
        bundle.export_bundle(mine, out)
    if out.exists():  # pragma: no cover - what main did: say what went in
        with tarfile.open(out) as tar:
            names = tar.getnames()
        pytest.fail(f"a bundle was written: {names}")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tar.gz.")]


# -- 3. the bytes checked are the bytes loaded -------------------------------------------------


def _onnx_add(value: float) -> bytes:
    """A real ONNX graph: y = x + value."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "c"], ["y"])],
        "add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor("c", TensorProto.FLOAT, [1], [value])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _load(engine_name: str, entry: Any) -> Any:
    from paddleocr_trt.engines import registry
    from paddleocr_trt.engines.contract import LoadRequest, Target
    from paddleocr_trt.model_types import ModelType
    from paddleocr_trt.pipeline import PipelineOptions

    request = LoadRequest(
        name="add",
        model_type=ModelType.RECOGNITION,
        target=Target("cpu", 0),
        precision="fp32",
        options=PipelineOptions(),
    )
    return registry.engine(engine_name).load(Artifact(entry, from_cache=True), request)


def _cached(tmp_path: Path, kind: str, payload: bytes) -> tuple[EngineCache, Any, Any]:
    cache, key = EngineCache(tmp_path / "cache"), make_key(kind=kind)
    name = "engine.plan" if kind == "engine" else "model.onnx"

    def create(tmp: Path) -> Path:
        (tmp / name).write_bytes(payload)
        return tmp / name

    cache.get_or_create(key, create, artifact_name=name)
    entry = cache.get(key, verify=True)  # the check
    assert entry is not None
    return cache, key, entry


def test_onnxruntime_loads_the_checked_bytes(tmp_path: Path) -> None:
    _, _, entry = _cached(tmp_path, "onnxruntime", _onnx_add(1.0))
    runner = _load("onnxruntime", entry)
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    np.testing.assert_array_equal(runner.infer([x])[0], x + 1.0)
    # a one-thread lane of the pipelined path makes a second session: from the same bytes
    from concurrent.futures import ThreadPoolExecutor

    from paddleocr_trt.backend.base import mark_one_thread_lane

    with ThreadPoolExecutor(1, initializer=mark_one_thread_lane) as lane:
        np.testing.assert_array_equal(lane.submit(runner.infer, [x]).result()[0], x + 1.0)
    assert runner._lane_session is not None
    runner.close()


@pytest.mark.parametrize("swap", ["other bytes", "symlink", "hard link"])
def test_artifact_swapped_between_check_and_load_is_never_loaded(swap: str, tmp_path: Path) -> None:
    """main: failed (ONNX Runtime opened the path again and ran the swapped-in graph)."""
    cache, key, entry = _cached(tmp_path, "onnxruntime", _onnx_add(1.0))
    artifact = entry.artifact_path
    other = tmp_path / "other.onnx"
    other.write_bytes(_onnx_add(1000.0))
    other.chmod(0o600)
    # the swap, between the check (cache.get) and the load
    if swap == "other bytes":
        os.replace(other, artifact)
    elif swap == "symlink":
        artifact.unlink()
        artifact.symlink_to(other)
    else:
        artifact.unlink()
        os.link(other, artifact)
    with pytest.raises(ArtifactChangedError):
        _load("onnxruntime", entry)
    # what the drop-in does with that error (integration/engine_path.py): drop it, rebuild
    assert cache.invalidate(entry, "changed after its check")
    assert cache.get(key) is None
    if swap != "other bytes":
        assert other.read_bytes() == _onnx_add(1000.0)  # the link's target is untouched


@pytest.mark.parametrize("engine_name", ["tensorrt", "tensorrt-rtx"])
def test_tensorrt_plan_swapped_after_its_check_is_refused_before_deserializing(
    engine_name: str, tmp_path: Path
) -> None:
    """main: failed (the runner read the path again; whatever was there went to TensorRT).
    Built, not run: no TensorRT engine executes here, the refusal comes before deserializing."""
    _, _, entry = _cached(tmp_path, "engine", os.urandom(4096))
    entry.artifact_path.write_bytes(os.urandom(4096))  # same size, other bytes
    with pytest.raises(ArtifactChangedError, match="changed after the cache checked it"):
        _load(engine_name, entry)


# -- 4. a creator's writes go through the held build dir --------------------------------------


def test_creator_writes_never_follow_a_link_swapped_into_the_build_path(tmp_path: Path) -> None:
    """main: failed (the build dir swapped for a link while the converter ran: the converter's
    output went into the link's target, a directory of the user's)."""
    cache, key = EngineCache(tmp_path / "cache"), make_key()
    victim = private_dir(tmp_path / "victim")
    private_dir(victim / "entry")
    (victim / "entry" / "notes.txt").write_text("mine")
    before = snapshot(victim)
    seen: list[Path] = []

    def create(tmp: Path) -> Path:
        seen.append(tmp)
        builds = [p for p in (cache.root / "tmp").iterdir() if p.is_dir()]
        assert len(builds) == 1
        builds[0].rename(tmp_path / "moved-away")  # the swap, while the converter runs
        builds[0].symlink_to(victim)
        (tmp / "model.onnx").write_bytes(b"converted " * 100)
        (tmp / "notes.txt").write_text("clobbered")
        return tmp / "model.onnx"

    with contextlib.suppress(CacheError):
        cache.get_or_create(key, create, artifact_name="model.onnx")
    assert snapshot(victim) == before
    if Path(f"/proc/{os.getpid()}/fd").is_dir():
        assert str(seen[0]).startswith(f"/proc/{os.getpid()}/fd/")
        entry = cache.get(key, verify=True)  # published from the held build dir
        assert entry is not None
        assert entry.artifact_path.read_bytes() == b"converted " * 100


def test_a_child_process_writes_through_the_build_dir_descriptor(tmp_path: Path) -> None:
    """Converters run in child processes (paddle2onnx, TensorRT builds): the path they are
    given must work there too."""
    cache, key = EngineCache(tmp_path / "cache"), make_key()
    code = "import sys, pathlib; (pathlib.Path(sys.argv[1]) / 'model.onnx').write_bytes(b'c' * 64)"

    def create(tmp: Path) -> Path:
        subprocess.run([sys.executable, "-c", code, str(tmp)], check=True, timeout=60)
        return tmp / "model.onnx"

    entry = cache.get_or_create(key, create, artifact_name="model.onnx")
    assert entry.artifact_path.read_bytes() == b"c" * 64
    assert oct(entry.artifact_path.stat().st_mode & 0o777) == oct(0o600)


def test_convert_outputs_are_the_checked_bytes(
    ocr_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``convert -o`` and ``--to-model-dir`` copy the cached ONNX the cache just checked.
    main: failed (both re-opened the cache path: bytes swapped after the check were written
    out as the validated graph). Real conversion of the cls model."""
    from paddleocr_trt.optimizer import TensorRTOptimizer

    optimizer = TensorRTOptimizer(cache_dir=tmp_path / "cache")
    first = optimizer.convert_model(ocr_models.cls, model_type="classification")
    assert first.passed
    real_onnx = optimizer.pipeline.onnx
    original = Path(first.onnx_path).read_bytes()

    def checked_then_swapped(*args: Any, **kwargs: Any) -> Any:
        artifact = real_onnx(*args, **kwargs)  # checked against its manifest
        artifact.path.write_bytes(b"\0" * len(original))  # the swap, after the check
        return artifact

    monkeypatch.setattr(optimizer.pipeline, "onnx", checked_then_swapped)
    for where in ("output_path", "to_model_dir"):
        out = tmp_path / f"out-{where}"
        kwargs = {"output_path": out / "model.onnx"} if where == "output_path" else {}
        if where == "to_model_dir":
            kwargs["to_model_dir"] = out
        with pytest.raises(ArtifactChangedError):
            optimizer.convert_model(ocr_models.cls, model_type="classification", **kwargs)
        assert not out.exists() or not any(
            p.read_bytes() == b"\0" * len(original) for p in out.rglob("*.onnx")
        )
        Path(first.onnx_path).write_bytes(original)  # back as the cache checked it
