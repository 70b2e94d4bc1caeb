"""EngineCache across real processes: racing builders, a builder killed mid-write, a held lock,
a read-only cache and a full disk, each made real (mounts, setuid, RLIMIT_FSIZE)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.cache import (
    leftovers,
    make_key,
    parse_worker_output,
    read_only,
    run_worker,
    tmpfs,
    wait_for,
    world_traversable_tmpdir,
)

from paddleocr_trt.cache import EngineCache
from paddleocr_trt.cache.fsutil import owner_record, remove_tree, sha256_file
from paddleocr_trt.errors import CacheError


def _job(root: Path, **extra: object) -> dict[str, object]:
    return {"op": "get_or_create", "root": str(root), "key": make_key().to_dict(), **extra}


@pytest.mark.slow
def test_concurrent_processes_build_once_and_share(cache_root: Path, tmp_path: Path) -> None:
    counter, barrier = tmp_path / "creations", tmp_path / "go"
    job = _job(cache_root, counter=str(counter), barrier=str(barrier), sleep=1.0)
    procs = [run_worker(job, background=True) for _ in range(3)]
    time.sleep(0.5)  # all three interpreters are up and waiting at the barrier
    barrier.touch()
    results = [parse_worker_output(p) for p in procs]
    assert len(counter.read_text().split()) == 1, counter.read_text()
    assert all(r["ok"] for r in results)
    assert len({r["sha256"] for r in results}) == 1
    assert len({r["artifact_path"] for r in results}) == 1
    assert {r["builder_pid"] for r in results} == {int(counter.read_text())}
    assert leftovers(cache_root) == []


@pytest.mark.slow
def test_builder_killed_mid_write_leaves_nothing_usable(cache_root: Path, tmp_path: Path) -> None:
    ready, counter = tmp_path / "ready", tmp_path / "creations"
    proc = run_worker(
        _job(cache_root, half_then_hang=True, ready=str(ready), counter=str(counter), size=8192),
        background=True,
    )
    wait_for(ready)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(leftovers(cache_root)) == 1  # its half-written temp dir, not an entry
    cache = EngineCache(cache_root)
    key = make_key()
    assert cache.get(key) is None

    result = run_worker(_job(cache_root, counter=str(counter), size=8192))
    assert result["ok"] and len(counter.read_text().split()) == 2
    entry = cache.get(key, verify=True)
    assert entry is not None and entry.artifact_path.stat().st_size == 8192
    assert sha256_file(entry.artifact_path) == result["sha256"]
    assert leftovers(cache_root) == []


@pytest.mark.slow
def test_lock_wait_times_out_with_a_clear_error(cache_root: Path, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    holder = run_worker(_job(cache_root, ready=str(ready), sleep=1.5), background=True)
    try:
        wait_for(ready)
        cache = EngineCache(cache_root, lock_timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(
            CacheError, match=r"timed out after 0.5 s waiting for the cache lock"
        ) as e:
            cache.get_or_create(make_key(), lambda d: d / "never", artifact_name="m.bin")
        assert time.monotonic() - started < 1.4
        assert f"held by pid {holder.pid}" in str(e.value)
    finally:
        result = parse_worker_output(holder)
    assert result["ok"]
    assert EngineCache(cache_root).get(make_key()) is not None


@pytest.mark.slow
def test_read_only_cache_raises_cache_error_and_still_serves_hits() -> None:
    base = world_traversable_tmpdir()
    try:
        empty, filled = base / "empty", base / "filled"
        empty.mkdir()
        assert run_worker(_job(filled))["ok"]  # populate while writable
        for path in (empty, filled):
            path.chmod(0o755)
            for sub in path.rglob("*"):
                sub.chmod(0o755 if sub.is_dir() else 0o644)
        with read_only(empty) as (how, uid), read_only(filled):
            print(f"\nread-only mechanism: {how}")
            created = base / "created-marker"
            result = run_worker(_job(empty, counter=str(created)), user=uid)
            assert not result["ok"], how
            assert result["error_type"] == "CacheError"
            assert f"cache directory {empty} is not writable" in result["error"], result
            assert not created.exists()  # nothing was built for a cache that cannot keep it
            assert list(empty.iterdir()) == []
            hit = run_worker(_job(filled), user=uid)
            assert hit["ok"], (how, hit)
    finally:
        remove_tree(base)


@pytest.mark.slow
@pytest.mark.parametrize("mechanism", ["tmpfs", "rlimit"])
def test_full_disk_during_creation(mechanism: str, tmp_path: Path) -> None:
    """A 2 MiB artifact on a 1 MiB tmpfs (ENOSPC), or past RLIMIT_FSIZE (EFBIG)."""
    big = 2 * 1024 * 1024
    disk = tmp_path / "disk"
    with tmpfs(disk, "1m") if mechanism == "tmpfs" else contextlib.nullcontext() as reason:
        if reason:
            pytest.skip(reason)
        root = (disk if mechanism == "tmpfs" else tmp_path) / "cache"
        limit = big // 2 if mechanism == "rlimit" else None
        result = run_worker(_job(root, size=big), fsize_limit=limit)
        assert not result["ok"]
        assert result["error_type"] == "CacheError"
        assert f"cache directory {root} is full" in result["error"], result
        expected = "No space left" if mechanism == "tmpfs" else "File too large"
        assert expected in result["error"]
        assert leftovers(root) == []
        assert EngineCache(root).entries() == []


OWNER_CASES = ("live", "dead", "recycled-pid", "no-owner-yet", "no-owner-old")


def test_clean_temp_keeps_live_builders_and_removes_dead_ones(cache_root: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    EngineCache(cache_root).fsroot.open("tmp", create=True).close()  # the cache's own root
    tmp = cache_root / "tmp"
    names = {what: f"onnx-{'a' * 24}-{i}-{i:08x}" for i, what in enumerate(OWNER_CASES)}
    owners = {
        "live": owner_record(),
        "dead": {**owner_record(), "pid": int(dead.stdout)},
        "recycled-pid": {**owner_record(), "pid_start": "1"},  # our pid, another start time
    }
    for what, owner in owners.items():
        (tmp / names[what] / "entry").mkdir(parents=True)
        (tmp / names[what] / "owner.json").write_text(json.dumps(owner))
    (tmp / names["no-owner-yet"]).mkdir()
    old = tmp / names["no-owner-old"]
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert EngineCache(cache_root).clean_temp() == 3
    assert leftovers(cache_root) == sorted([names["live"], names["no-owner-yet"]])
