"""Issue 12: a cache dir that is ``~`` by mistake, or shared with an attacker, must never make the
cache delete, overwrite or serve what is not its own. Real files, real links, real uids."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.cache import NOBODY_UID, make_key

from paddleocr_trt.cache import EngineCache
from paddleocr_trt.errors import CacheError

OLD = time.time() - 7200  # older than every grace period the cache has


def _create(tmp_dir: Path) -> Path:
    path = tmp_dir / "a.bin"
    path.write_bytes(os.urandom(2048))
    return path


def _victim(tmp_path: Path) -> tuple[Path, bytes]:
    """A file of the user's outside the cache, old enough for any "stale" rule."""
    victim_dir = tmp_path / "precious"
    victim_dir.mkdir()
    victim = victim_dir / "thesis.txt"
    content = b"years of work\n"
    victim.write_bytes(content)
    for path in (victim, victim_dir):
        os.utime(path, (OLD, OLD))
    return victim, content


def _manifest(entry_dir: Path) -> dict:
    return json.loads((entry_dir / "manifest.json").read_text())


def _rewrite_manifest(entry_dir: Path, **changes: object) -> None:
    manifest = {**_manifest(entry_dir), **changes}
    (entry_dir / "manifest.json").write_text(json.dumps(manifest))


def _cache_root(root: Path) -> Path:
    """A cache root the cache made (0700, CACHEDIR.TAG): the plants below are in its own dir."""
    EngineCache(root).fsroot.open(create=True).close()
    return root


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to make files owned by another uid (os.chown)"
)


# -- 1. the cache only removes what it can prove it created ----------------------------------


def test_cache_dir_with_an_existing_tmp_keeps_the_users_files(tmp_path: Path) -> None:
    """``--cache-dir ~`` where ``~/tmp`` holds old files of the user's."""
    home = tmp_path / "home"
    user_tmp = home / "tmp"
    (user_tmp / "project").mkdir(parents=True)
    (user_tmp / "project" / "notes.txt").write_text("mine")
    (user_tmp / "trash-bin").mkdir()
    (user_tmp / "download.iso").write_bytes(b"x" * 100)
    for path in (user_tmp / "project", user_tmp / "trash-bin", user_tmp / "download.iso"):
        os.utime(path, (OLD, OLD))
    cache = EngineCache(home)
    cache.get_or_create(make_key(), _create, artifact_name="model.bin")
    cache.prune(0)
    cache.clear()
    assert (user_tmp / "project" / "notes.txt").read_text() == "mine"
    assert (user_tmp / "trash-bin").is_dir() and (user_tmp / "download.iso").is_file()


def test_planted_tmp_symlink_is_never_followed(tmp_path: Path) -> None:
    victim, content = _victim(tmp_path)
    root = _cache_root(tmp_path / "cache")
    (root / "tmp").symlink_to(victim.parent)
    cache = EngineCache(root)
    with pytest.raises(CacheError, match="symbolic link"):
        cache.get_or_create(make_key(), _create, artifact_name="model.bin")
    cache.clear()
    cache.prune(0)
    assert victim.read_bytes() == content


def test_clear_all_keeps_directories_the_cache_did_not_make(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = EngineCache(root)
    key = make_key()
    cache.get_or_create(key, _create, artifact_name="model.bin")
    foreign = [root / "onnx" / "my-models", root / "engine" / ("0" * 24)]  # no manifest
    for path in foreign:
        path.mkdir(parents=True, exist_ok=True)
        (path / "keep.txt").write_text("mine")
    assert cache.clear() == 1
    assert all((path / "keep.txt").read_text() == "mine" for path in foreign)
    assert cache.get(key) is None


# -- 2. writes never follow links -------------------------------------------------------------


def test_planted_lock_symlink_is_not_written_through(tmp_path: Path) -> None:
    victim, content = _victim(tmp_path)
    root = _cache_root(tmp_path / "cache")
    key = make_key()
    (root / "locks").mkdir(parents=True)
    (root / "locks" / f"{key.kind}-{key.digest}.lock").symlink_to(victim)
    with pytest.raises(CacheError, match="symbolic link"):
        EngineCache(root).get_or_create(key, _create, artifact_name="model.bin")
    assert victim.read_bytes() == content


@needs_root
def test_lock_file_of_another_user_is_refused(tmp_path: Path) -> None:
    root = _cache_root(tmp_path / "cache")
    key = make_key()
    (root / "locks").mkdir(parents=True)
    lock = root / "locks" / f"{key.kind}-{key.digest}.lock"
    lock.write_text("planted")
    os.chown(lock, NOBODY_UID, NOBODY_UID)
    with pytest.raises(CacheError, match="owned by uid"):
        EngineCache(root).get_or_create(key, _create, artifact_name="model.bin")
    assert lock.read_text() == "planted"


def test_validation_images_are_replaced_atomically_never_written_through(tmp_path: Path) -> None:
    from paddleocr_trt.pipeline import ArtifactPipeline

    victim, content = _victim(tmp_path)
    root = _cache_root(tmp_path / "cache")
    images = root / "validation-images"
    images.mkdir(parents=True)
    (images / "english_document.png").symlink_to(victim)
    old = images / "tiny_word.png"
    old.write_bytes(b"an older render")
    outside_link = tmp_path / "hardlink.png"
    os.link(old, outside_link)  # an in-place write would change this file too
    rendered = ArtifactPipeline(EngineCache(root)).validation_images()
    assert victim.read_bytes() == content
    assert outside_link.read_bytes() == b"an older render"
    assert not (images / "english_document.png").is_symlink()
    assert all(image.data.startswith(b"\x89PNG") for image in rendered)
    assert all((images / i.name).read_bytes() == i.data for i in rendered)  # written as well
    assert not images.stat().st_mode & 0o022


# -- 4. only entries of the current user, unwritable by others, inside their dir ------------


@needs_root
def test_entry_of_another_user_is_refused_rebuilt_and_moved_aside_not_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "cache"
    cache = EngineCache(root)
    key = make_key()
    entry = cache.get_or_create(key, _create, artifact_name="model.bin")
    planted = entry.artifact_path.read_bytes()
    for path in [entry.path, *entry.path.iterdir()]:
        os.chown(path, NOBODY_UID, NOBODY_UID, follow_symlinks=False)
    with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
        rebuilt = EngineCache(root).get_or_create(key, _create, artifact_name="model.bin")
    assert rebuilt.artifact_path.read_bytes() != planted
    assert rebuilt.path.stat().st_uid == os.geteuid()
    refusals = [r for r in caplog.records if "not trusted" in r.getMessage()]
    assert len(refusals) == 1 and "owned by uid 65534" in refusals[0].getMessage()
    aside = [p for p in (root / "tmp").iterdir() if p.name.startswith("untrusted-")]
    assert len(aside) == 1 and (aside[0] / "model.bin").read_bytes() == planted


def test_entry_writable_by_others_is_not_served(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = EngineCache(root)
    key = make_key()
    entry = cache.get_or_create(key, _create, artifact_name="model.bin")
    entry.artifact_path.chmod(0o666)
    assert EngineCache(root).get(key) is None


def test_manifest_naming_a_file_outside_its_entry_is_not_served(tmp_path: Path) -> None:
    victim, content = _victim(tmp_path)
    root = tmp_path / "cache"
    cache = EngineCache(root)
    key = make_key()
    entry = cache.get_or_create(key, _create, artifact_name="model.bin")
    outside = os.path.relpath(victim, entry.path)
    record = {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    _rewrite_manifest(entry.path, artifact=outside, files={outside: record})
    assert cache.get(key) is None
    assert all(not e.artifact_path.samefile(victim) for e in cache.entries() if e.problem is None)
    assert victim.read_bytes() == content


@pytest.mark.parametrize("what", ["artifact", "entry dir"])
def test_symlinked_artifact_or_entry_is_not_served(what: str, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = EngineCache(root)
    key = make_key()
    entry = cache.get_or_create(key, _create, artifact_name="model.bin")
    elsewhere = tmp_path / "elsewhere"
    if what == "artifact":
        elsewhere.write_bytes(entry.artifact_path.read_bytes())
        entry.artifact_path.unlink()
        entry.artifact_path.symlink_to(elsewhere)
    else:
        entry.path.rename(elsewhere)
        entry.path.symlink_to(elsewhere)
    assert EngineCache(root).get(key) is None
    assert elsewhere.exists()


def test_created_private_whatever_the_umask(tmp_path: Path) -> None:
    root = tmp_path / "app" / "cache"
    code = (
        "import os, sys; sys.path.insert(0, 'tests'); os.umask(0); "
        "from fixtures.cache import make_key; from paddleocr_trt.cache import EngineCache; "
        "from pathlib import Path; c = EngineCache(sys.argv[1]); "
        "write = lambda d: (d / 'a.bin').write_bytes(b'x' * 10) and d / 'a.bin'; "
        "c.get_or_create(make_key(), write, artifact_name='model.bin'); "
        "c.fingerprint(sys.argv[2]); "
        "from paddleocr_trt.pipeline import ArtifactPipeline; "
        "ArtifactPipeline(c).validation_images()"
    )
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "inference.pdmodel").write_bytes(b"p" * 10)
    (model_dir / "inference.pdiparams").write_bytes(b"w" * 10)
    os.utime(model_dir / "inference.pdiparams", (OLD, OLD))
    os.utime(model_dir / "inference.pdmodel", (OLD, OLD))
    subprocess.run([sys.executable, "-c", code, str(root), str(model_dir)], check=True)
    made = [root, *root.rglob("*")]
    assert len(made) >= 8, made
    for path in made:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {mode:o}"


# -- 5. type-confused metadata is corruption, not a crash ---------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"last_used": "yesterday"},
        {"metadata": "x"},
        {"created": [1]},
        {"key": "k"},
        {"files": {"model.bin": "x"}},
        {"validation": 3},
    ],
    ids=lambda c: next(iter(c)),
)
def test_type_confused_manifest_is_rebuilt_not_a_crash(
    changes: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from paddleocr_trt.cli import main as cli

    root = tmp_path / "cache"
    cache = EngineCache(root)
    key = make_key()
    entry = cache.get_or_create(key, _create, artifact_name="model.bin")
    _rewrite_manifest(entry.path, **changes)
    listed = EngineCache(root).entries()
    assert len(listed) == 1 and listed[0].problem is not None
    assert cli.main(["cache", "list", "--cache-dir", str(root)]) == 0
    assert "BROKEN" in capsys.readouterr().out
    assert cli.main(["cache", "prune", "--older-than", "0", "--cache-dir", str(root)]) == 0
    rebuilt = EngineCache(root).get_or_create(key, _create, artifact_name="model.bin")
    assert rebuilt.problem is None and rebuilt.metadata == {}


def test_hash_index_record_of_the_wrong_type_is_dropped_and_cleared(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("inference.pdmodel", "inference.pdiparams"):
        (model_dir / name).write_bytes(os.urandom(64))
    root.mkdir(mode=0o700)
    cache = EngineCache(root)
    first = cache.fingerprint(model_dir).digest
    index = root / "hash-index.json"
    records = {str(p.resolve()): "not a record" for p in model_dir.iterdir()}
    records.update({str(p): ["x"] for p in model_dir.iterdir()})
    index.write_text(json.dumps({"version": 1, "files": records}))
    os.chmod(index, 0o600)
    assert EngineCache(root).fingerprint(model_dir).digest == first
    index.write_text(json.dumps({"version": 1, "files": records}))
    EngineCache(root).clear()
    assert not index.exists()


def test_housekeeping_of_a_missing_cache_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "not-yet"
    cache = EngineCache(root)
    assert cache.clear() == 0 and cache.prune(0) == [] and cache.entries() == []
    assert cache.get(make_key()) is None
    assert not root.exists()


def test_timing_cache_dir_of_another_user_or_a_link_is_not_used(tmp_path: Path) -> None:
    from paddleocr_trt.pipeline import ArtifactPipeline

    root = _cache_root(tmp_path / "cache")
    (root / "timing").symlink_to(tmp_path)
    assert ArtifactPipeline(EngineCache(root)).timing_cache_dir() is None
    (root / "timing").unlink()
    made = ArtifactPipeline(EngineCache(root)).timing_cache_dir()
    assert made == root / "timing" and stat.S_IMODE(made.stat().st_mode) == 0o700
