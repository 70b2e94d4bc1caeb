"""Issue 12 point 9: no conversion child outlives its parent, SIGTERM leaves no temp dir, cache
hits clean up after killed builders, and a waiter on a held lock says who holds it. Real
processes and real signals."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.cache import leftovers, make_key, parse_worker_output, run_worker, wait_for

from paddleocr_trt.cache import EngineCache
from paddleocr_trt.cache.fsutil import owner_record

CONVERT_IN_A_LIBRARY = """
import sys
from paddleocr_trt.optimizer import TensorRTOptimizer
TensorRTOptimizer(cache_dir=sys.argv[2]).convert_model(sys.argv[1], model_type="classification")
"""


def _children_running(parent: int, needle: str) -> list[int]:
    """Pids whose parent is ``parent`` and whose command line contains ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == parent and needle in cmdline and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2 :].split()[0] != "Z"


def _wait_for_worker(parent: subprocess.Popen, timeout: float = 60) -> int:
    """The export worker's pid, once it is past its start-up (it has written its status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in _children_running(parent.pid, "export_worker"):
            with contextlib.suppress(OSError):
                request = Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[3].decode())
                if (request.parent / "status.json").exists():
                    return pid
        if parent.poll() is not None:
            raise AssertionError(f"parent exited early: {parent.communicate()}")
        time.sleep(0.05)
    raise AssertionError("the export worker never started")


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_export_worker_dies_with_its_parent(sig: int, ocr_models, tmp_path: Path) -> None:
    """The worker is stopped while its parent dies, as in a long step that writes nothing: a
    broken stderr pipe cannot kill it then, only a real tie to the parent can."""
    parent = subprocess.Popen(
        [sys.executable, "-c", CONVERT_IN_A_LIBRARY, str(ocr_models.cls), str(tmp_path / "c")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = _wait_for_worker(parent)
    try:
        os.kill(worker, signal.SIGSTOP)
        parent.send_signal(sig)
        parent.wait(timeout=30)
        assert _wait_gone(worker, timeout=5), f"export worker {worker} outlived its parent"
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


PIPE_CHILD = """
import os, sys, time
from paddleocr_trt.childproc import watch_parent_pipe
watch_parent_pipe(int(os.environ["PADDLEOCR_TRT_PARENT_PIPE_FD"]))
print("ready", flush=True)
time.sleep(60)
"""

PIPE_PARENT = """
import subprocess, sys, time
from paddleocr_trt.childproc import parent_ties
with parent_ties() as ties:
    import os
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], env={**os.environ, **ties.env},
                             pass_fds=ties.pass_fds, start_new_session=True)
    ties.close_child_end()
    print(child.pid, flush=True)
    time.sleep(60)
"""


def test_the_pipe_tie_alone_ends_the_child_when_the_parent_dies() -> None:
    """The tie that does not depend on Linux or on the forking thread (childproc.py)."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PIPE_PARENT, PIPE_CHILD], stdout=subprocess.PIPE, text=True
    )
    child = int(parent.stdout.readline())
    try:
        time.sleep(0.5)
        assert _alive(child)
        parent.kill()
        parent.wait(timeout=10)
        assert _wait_gone(child, timeout=10)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_sigterm_of_the_cli_kills_the_worker_and_removes_the_build_dir(
    ocr_models, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    args = ["--cache-dir", str(cache)]
    cli = subprocess.Popen(
        [sys.executable, "-m", "paddleocr_trt.cli.main", "convert", str(ocr_models.cls), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    worker = _wait_for_worker(cli)
    try:
        assert leftovers(cache), "the build dir should exist while converting"
        cli.send_signal(signal.SIGTERM)
        _, err = cli.communicate(timeout=30)
        assert cli.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
        assert _wait_gone(worker)
        assert leftovers(cache) == []
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_leftover_build_dir_of_a_dead_builder_goes_on_a_cache_hit(cache_root: Path) -> None:
    cache = EngineCache(cache_root)
    key = make_key()
    cache.get_or_create(key, lambda d: (d / "a").write_bytes(b"x") and d / "a", artifact_name="m")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    leftover = cache_root / "tmp" / f"{key.kind}-{key.digest}-{int(dead.stdout)}-0badc0de"
    (leftover / "entry").mkdir(parents=True)
    (leftover / "entry" / "half.onnx").write_bytes(b"half")
    (leftover / "owner.json").write_text(json.dumps({**owner_record(), "pid": int(dead.stdout)}))
    assert EngineCache(cache_root).get(key) is not None
    assert leftovers(cache_root) == []


def test_lock_waiter_says_who_holds_it_and_keeps_saying_it(
    cache_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    import paddleocr_trt.cache.lock as lock

    monkeypatch.setattr(lock, "FIRST_REPORT_S", 0.2, raising=False)
    monkeypatch.setattr(lock, "REPORT_EVERY_S", 0.5, raising=False)
    ready = tmp_path / "ready"
    job = {"op": "get_or_create", "root": str(cache_root), "key": make_key().to_dict()}
    holder = run_worker({**job, "ready": str(ready), "sleep": 2.5}, background=True)
    try:
        wait_for(ready)
        with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
            entry = EngineCache(cache_root, lock_timeout_s=30).get_or_create(
                make_key(), lambda d: d / "never", artifact_name="model.bin"
            )
    finally:
        result = parse_worker_output(holder)
    assert result["ok"] and entry.metadata["builder_pid"] == holder.pid
    waits = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(waits) >= 2, caplog.text
    assert all(f"held by pid {holder.pid}" in w for w in waits), waits


def test_die_with_parent_exits_at_once_when_the_parent_is_already_gone() -> None:
    """The fork -> prctl window: a child whose parent already died (re-parented) must not run."""
    code = (
        "import os; from paddleocr_trt.childproc import die_with_parent; "
        "die_with_parent(os.getppid() + 1); print('still running')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "still running" not in proc.stdout
    code = code.replace("os.getppid() + 1", "os.getppid()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "still running" in proc.stdout
