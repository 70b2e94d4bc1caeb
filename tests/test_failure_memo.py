"""The failure memo on real files, and `paddleocr-trt cache list/clear` on it in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fixtures.cache import make_key

from paddleocr_trt.cache import EngineCache
from paddleocr_trt.cache.failures import FailureMemo
from paddleocr_trt.errors import EngineBuildError


def cli(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "paddleocr_trt.cli.cache_cmd", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _fill(root: Path) -> tuple[str, str]:
    cache = EngineCache(root)
    good = make_key()
    cache.get_or_create(good, lambda tmp: _file(tmp), artifact_name="model.onnx")
    bad = make_key(kind="engine")
    attempts = [{"attempt": 1, "precision": "fp16", "outcome": "crashed", "error_type": "Crash"}]
    FailureMemo(root).record(bad, EngineBuildError("fp16: crashed (SIGSEGV)"), attempts=attempts)
    return good.digest, bad.digest


def _file(tmp: Path) -> Path:
    path = tmp / "model.onnx"
    path.write_bytes(b"onnx bytes")
    return path


def test_record_get_is_exact_and_atomic(cache_root: Path) -> None:
    memo = FailureMemo(cache_root)
    key = make_key(kind="engine")
    assert memo.get(key) is None
    record = memo.record(key, EngineBuildError("no kernel"), context={"timeout_s": 60})
    assert record is not None and record.path is not None
    assert [p.name for p in memo.dir.iterdir()] == [record.path.name]  # no temp file left
    again = memo.get(key)
    assert again is not None and again.reason == "no kernel" and again.context["timeout_s"] == 60
    assert memo.get(make_key(kind="engine", gpu_name="NVIDIA L4")) is None
    # a stored key that does not match (hand-edited, or a digest collision) is not a hit
    data = json.loads(record.path.read_text())
    data["key"]["precision"] = "fp32"
    record.path.write_text(json.dumps(data))
    assert memo.get(key) is None
    record.path.write_text("{ torn")
    assert memo.get(key) is None and memo.list() == []


def test_cache_list_shows_failures_and_clear_forgets_them(cache_root: Path) -> None:
    good, bad = _fill(cache_root)
    code, out, _ = cli("list", "--cache-dir", str(cache_root))
    assert code == 0 and good in out and bad in out
    assert "FAILED (not retried" in out and "fp16: crashed (SIGSEGV)" in out
    assert "1 remembered failures" in out

    code, out, _ = cli("list", "--json", "--cache-dir", str(cache_root))
    data = json.loads(out)
    assert [e["digest"] for e in data["entries"]] == [good]
    (failure,) = data["failures"]
    assert failure["digest"] == bad and failure["attempts"][0]["outcome"] == "crashed"

    code, out, _ = cli("clear", bad[:10], "--cache-dir", str(cache_root))
    assert code == 0 and f"forgot the remembered failure {bad}" in out
    assert FailureMemo(cache_root).list() == []
    assert EngineCache(cache_root).entries()[0].digest == good  # the good entry stays


def test_cache_clear_all_forgets_failures_too(cache_root: Path) -> None:
    _fill(cache_root)
    code, out, _ = cli("clear", "--all", "--json", "--cache-dir", str(cache_root))
    assert code == 0 and json.loads(out) == {"removed": 1, "failures_removed": 1}
    assert FailureMemo(cache_root).list() == [] and EngineCache(cache_root).entries() == []


def test_doctor_lists_remembered_failures(cache_root: Path) -> None:
    _, bad = _fill(cache_root)
    command = [sys.executable, "-m", "paddleocr_trt.cli.main", "doctor", "--json"]
    proc = subprocess.run(
        [*command, "--cache-dir", str(cache_root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    (line,) = json.loads(proc.stdout)["cache"]["failures"]
    assert line.startswith(bad[:12]) and "fp16: crashed (SIGSEGV)" in line
