"""EngineCache in one process, on real files: round trip, every kind of bad entry, failed
creation/validation, housekeeping, and a full disk (real tmpfs) while publishing."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures.cache import leftovers, make_key, tmpfs

from paddleocr_trt.cache import CacheEntry, CachePublishError, EngineCache
from paddleocr_trt.cache.fsutil import sha256_file
from paddleocr_trt.errors import CacheError, ValidationFailedError
from paddleocr_trt.settings import ENV_CACHE_DIR


class Creator:
    """A create_fn that writes random bytes and counts its calls."""

    def __init__(self, size: int = 3000, extra: bool = False) -> None:
        self.calls = 0
        self.size = size
        self.extra = extra

    def __call__(self, tmp_dir: Path) -> tuple[Path, dict[str, Any]]:
        self.calls += 1
        path = tmp_dir / "out.onnx"
        path.write_bytes(os.urandom(self.size))
        if self.extra:
            (tmp_dir / "timing.cache").write_bytes(b"timing")
        return path, {"call": self.calls}


def test_default_root_follows_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "env-cache"))
    assert EngineCache().root == tmp_path / "env-cache"
    assert EngineCache(tmp_path / "explicit").root == tmp_path / "explicit"


def test_round_trip(cache_root: Path) -> None:
    cache, key, create = EngineCache(cache_root), make_key(), Creator(extra=True)
    assert cache.get(key) is None
    entry = cache.get_or_create(
        key,
        create,
        artifact_name="model.onnx",
        validate_fn=lambda p: {"passed": True, "f1": 1.0},
        keep_extra_files=True,
    )
    assert create.calls == 1
    assert entry.path == cache_root / "onnx" / key.digest
    assert entry.artifact_path == entry.path / "model.onnx"
    data = entry.artifact_path.read_bytes()
    m = json.loads((entry.path / "manifest.json").read_text())
    assert m["schema_version"] == 1 and m["package_version"]
    assert m["key"] == key.to_dict() and m["digest"] == key.digest
    assert m["artifact"] == "model.onnx"
    assert m["files"]["model.onnx"] == {"size": 3000, "sha256": sha256_file(entry.artifact_path)}
    assert m["files"]["timing.cache"]["size"] == 6
    assert m["validation"] == {"passed": True, "f1": 1.0}
    assert m["metadata"] == {"call": 1}
    assert m["build_seconds"] >= 0 and m["created"] <= m["last_used"]
    assert leftovers(cache_root) == []

    again = cache.get_or_create(key, create, artifact_name="model.onnx")
    assert create.calls == 1 and again.artifact_path.read_bytes() == data
    fresh = EngineCache(cache_root).get(key, verify=True)  # another instance, full re-read
    assert fresh is not None and fresh.artifact_path.read_bytes() == data
    other = cache.get_or_create(make_key(precision="fp16"), Creator(extra=True), artifact_name="m")
    assert sorted(p.name for p in other.path.iterdir()) == ["m", "manifest.json"]
    assert list(other.manifest["files"]) == ["m"]


def _truncate(entry: CacheEntry) -> None:
    data = entry.artifact_path.read_bytes()
    entry.artifact_path.write_bytes(data[: len(data) // 2])


def _flip_byte(entry: CacheEntry) -> None:
    data = bytearray(entry.artifact_path.read_bytes())
    data[10] ^= 0xFF
    entry.artifact_path.write_bytes(bytes(data))


def _delete_artifact(entry: CacheEntry) -> None:
    entry.artifact_path.unlink()


def _edit_manifest(change: Callable[[dict[str, Any]], None]) -> Callable[[CacheEntry], None]:
    def edit(entry: CacheEntry) -> None:
        path = entry.path / "manifest.json"
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest))

    return edit


def _corrupt_json(entry: CacheEntry) -> None:
    path = entry.path / "manifest.json"
    path.write_text(path.read_text()[:40])


CORRUPTIONS = {
    "truncated artifact": (_truncate, "bytes, manifest says"),
    "same size, other content": (_flip_byte, "does not match its sha256"),
    "missing artifact": (_delete_artifact, "is missing"),
    "corrupt manifest JSON": (_corrupt_json, "not valid JSON"),
    "foreign schema version": (
        _edit_manifest(lambda m: m.update(schema_version=99)),
        "schema version 99",
    ),
    "manifest key mismatch": (
        _edit_manifest(lambda m: m["key"].update(precision="fp16")),
        "differs from the requested key in ['precision']",
    ),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_bad_entry_is_logged_removed_and_rebuilt(
    corruption: str, cache_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damage, message = CORRUPTIONS[corruption]
    cache, key, create = EngineCache(cache_root), make_key(), Creator()
    entry = cache.get_or_create(key, create, artifact_name="model.onnx")
    damage(entry)
    caplog.set_level(logging.WARNING, logger="paddleocr_trt")
    assert EngineCache(cache_root).get(key) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(entry.path) in w and message in w for w in warnings), warnings
    assert not entry.path.exists()

    rebuilt = EngineCache(cache_root).get_or_create(key, create, artifact_name="model.onnx")
    assert create.calls == 2
    assert EngineCache(cache_root).get(key, verify=True) is not None
    assert sha256_file(rebuilt.artifact_path) == rebuilt.manifest["files"]["model.onnx"]["sha256"]
    if corruption in UNPROVABLE:  # no manifest of ours proves it: moved aside, never deleted
        (aside,) = leftovers(cache_root)
        assert aside.startswith(f"untrusted-onnx-{key.digest}-")
    else:
        assert leftovers(cache_root) == []


#: corruptions that destroy the manifest's proof that the entry is the cache's (schema + key)
UNPROVABLE = {"corrupt manifest JSON", "foreign schema version", "manifest key mismatch"}


def test_bad_entry_found_inside_get_or_create_is_rebuilt(cache_root: Path) -> None:
    cache, key, create = EngineCache(cache_root), make_key(), Creator()
    entry = cache.get_or_create(key, create, artifact_name="model.onnx")
    _truncate(entry)
    rebuilt = cache.get_or_create(key, create, artifact_name="model.onnx")
    assert create.calls == 2 and rebuilt.artifact_path.stat().st_size == 3000


@pytest.mark.parametrize(
    "validate",
    [
        pytest.param(lambda p: {"passed": False, "agreement": 0.5}, id="report-failed"),
        pytest.param(lambda p: 1 / 0, id="raises"),
    ],
)
def test_failed_validation_publishes_nothing(
    validate: Callable[[Path], Any], cache_root: Path
) -> None:
    cache, key, create = EngineCache(cache_root), make_key(), Creator()
    expected = (ValidationFailedError, ZeroDivisionError)
    with pytest.raises(expected) as info:
        cache.get_or_create(key, create, artifact_name="model.onnx", validate_fn=validate)
    if isinstance(info.value, ValidationFailedError):
        assert info.value.report == {"passed": False, "agreement": 0.5}
    assert create.calls == 1
    assert cache.get(key) is None and not cache.entry_dir(key).exists()
    assert leftovers(cache_root) == []


def test_failed_creation_publishes_nothing(cache_root: Path) -> None:
    cache, key = EngineCache(cache_root), make_key()

    def broken(tmp_dir: Path) -> Path:
        (tmp_dir / "half.onnx").write_bytes(b"half")
        raise RuntimeError("converter crashed")

    with pytest.raises(RuntimeError, match="converter crashed"):
        cache.get_or_create(key, broken, artifact_name="model.onnx")
    with pytest.raises(ValueError, match="inside"):
        cache.get_or_create(key, lambda d: cache_root.parent / "x", artifact_name="model.onnx")
    with pytest.raises(ValueError, match="plain file name"):
        cache.get_or_create(key, Creator(), artifact_name="../model.onnx")
    assert cache.entries() == [] and leftovers(cache_root) == []


def test_listing_info_remove_prune_clear(cache_root: Path) -> None:
    cache = EngineCache(cache_root)
    keys = [make_key(), make_key(precision="fp16"), make_key(kind="engine")]
    made = [cache.get_or_create(k, Creator(), artifact_name="a.bin") for k in keys]
    assert sorted(e.digest for e in cache.entries()) == sorted(k.digest for k in keys)
    assert all(e.problem is None for e in cache.entries())
    assert cache.size_bytes() >= 3 * 3000

    info = cache.info(keys[2].digest[:10])
    assert info is not None and info.key == keys[2] and info.kind == "engine"
    assert cache.info("0" * 24) is None

    _edit_manifest(lambda m: m.update(last_used=m["last_used"] - 10 * 86400))(made[0])
    assert cache.prune(older_than_days=5) == [keys[0].digest]
    assert cache.get(keys[0]) is None and cache.get(keys[1]) is not None

    _truncate(made[1])
    listed = {e.digest: e for e in cache.entries()}
    assert "bytes, manifest says" in (listed[keys[1].digest].problem or "")

    assert cache.remove(keys[1].digest) is True and cache.remove(keys[1].digest) is False
    assert cache.clear() == 1
    assert cache.entries() == [] and not list((cache_root / "locks").iterdir())


def test_full_disk_while_publishing_keeps_usable_artifact(tmp_path: Path) -> None:
    """Real ENOSPC (1 MiB tmpfs): the artifact fits, the manifest does not."""
    mount = tmp_path / "small"
    with tmpfs(mount, "1m") as reason:
        if reason:
            pytest.skip(reason)
        cache, key = EngineCache(mount / "cache"), make_key()
        payload = os.urandom(256 * 1024)

        def create_then_fill_disk(tmp_dir: Path) -> Path:
            artifact = tmp_dir / "model.onnx"
            artifact.write_bytes(payload)
            with open(mount / "filler", "wb", buffering=0) as filler:  # another program eats
                try:  # the rest of the disk
                    while filler.write(b"\0" * 4096):
                        pass
                except OSError:
                    pass
            return artifact

        with pytest.raises(CachePublishError, match="is full") as info:
            cache.get_or_create(key, create_then_fill_disk, artifact_name="model.onnx")
        error = info.value
        assert isinstance(error, CacheError) and str(mount / "cache") in str(error)
        assert error.artifact_path is not None
        assert error.artifact_path.read_bytes() == payload  # usable for this run
        assert not cache.entry_dir(key).exists() and cache.get(key) is None
        error.discard()
        (mount / "filler").unlink()
        assert leftovers(mount / "cache") == []
        entry = cache.get_or_create(key, Creator(size=1000), artifact_name="model.onnx")
        assert entry.artifact_path.stat().st_size == 1000


def test_invalidate_by_user_drops_only_that_build(
    cache_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache, key, create = EngineCache(cache_root), make_key(kind="engine"), Creator()
    old = cache.get_or_create(key, create, artifact_name="model.engine")
    caplog.set_level(logging.WARNING, logger="paddleocr_trt")
    assert cache.invalidate(old, "TensorRT returned None from deserialize_cuda_engine")
    assert any("deserialize_cuda_engine" in r.getMessage() for r in caplog.records)
    new = cache.get_or_create(key, create, artifact_name="model.engine")
    assert create.calls == 2
    assert cache.invalidate(old, "stale handle") is False  # the rebuilt entry stays
    assert cache.get(key) == new


def test_cache_of_an_earlier_release_is_adopted_and_marked(cache_root: Path) -> None:
    """A 0700 root holding only the cache's own names (no CACHEDIR.TAG: made before it existed)
    is still this cache: hits are served, and it is marked when something must be deleted."""
    key, create = make_key(), Creator()
    EngineCache(cache_root).get_or_create(key, create, artifact_name="model.onnx")
    (cache_root / "CACHEDIR.TAG").unlink()
    cache_root.chmod(0o700)
    cache = EngineCache(cache_root)
    assert cache.root == cache_root and cache.get(key) is not None
    assert cache.clear() == 1 and create.calls == 1
    assert (cache_root / "CACHEDIR.TAG").read_bytes().startswith(b"Signature: 8a477f59")
