"""``paddleocr-trt cache``: real entries, real argparse wiring, real child processes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.cache import make_key

from paddleocr_trt.cache import EngineCache
from paddleocr_trt.cli import cache_cmd


def _create(tmp_dir: Path) -> Path:
    path = tmp_dir / "a.bin"
    path.write_bytes(os.urandom(2048))
    return path


@pytest.fixture
def filled(cache_root: Path) -> tuple[Path, list[str]]:
    cache = EngineCache(cache_root)
    keys = [make_key(), make_key(kind="engine")]
    for key in keys:
        cache.get_or_create(key, _create, artifact_name="model.bin")
    return cache_root, [k.digest for k in keys]


def cli(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "paddleocr_trt.cli.cache_cmd", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout, proc.stderr


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The way the main CLI uses this module: ``register`` on its own subparsers."""
    parser = argparse.ArgumentParser(prog="paddleocr-trt")
    cache_cmd.register(parser.add_subparsers(dest="command"))
    parsed = parser.parse_args(list(args))
    code = parsed.func(parsed)
    return code, capsys.readouterr().out


def test_list_and_info_in_a_child_process(filled: tuple[Path, list[str]]) -> None:
    root, digests = filled
    code, out, _ = cli("list", "--json", "--cache-dir", str(root))
    assert code == 0
    data = json.loads(out)
    assert data["cache_dir"] == str(root) and data["size_bytes"] > 4096
    assert sorted(e["digest"] for e in data["entries"]) == sorted(digests)
    assert all(e["ok"] for e in data["entries"])

    code, out, _ = cli("list", "--cache-dir", str(root))
    assert code == 0 and all(d in out for d in digests) and "2 entries" in out

    code, out, _ = cli("info", digests[1][:8], "--json", "--cache-dir", str(root))
    assert code == 0
    info = json.loads(out)
    assert info["digest"] == digests[1] and info["kind"] == "engine" and info["ok"]
    assert info["manifest"]["key"]["tensorrt_version"] == "10.16.1"

    code, out, err = cli("info", "ffff", "--json", "--cache-dir", str(root))
    assert code == 1 and "no cache entry" in json.loads(out)["error"] and "error:" in err


def test_broken_entry_shows_in_list_and_info(
    filled: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, digests = filled
    (root / "onnx" / digests[0] / "model.bin").write_bytes(b"short")
    code, out = in_process(capsys, "cache", "list", "--cache-dir", str(root))
    assert code == 0 and "BROKEN: file model.bin has 5 bytes" in out
    code, out = in_process(capsys, "cache", "info", digests[0], "--cache-dir", str(root))
    assert code == 1 and "BROKEN" in out


def test_clear_and_prune(
    filled: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, digests = filled
    code, _ = in_process(capsys, "cache", "clear", "--cache-dir", str(root))
    assert code == 2  # neither KEY nor --all
    code, _ = in_process(capsys, "cache", "clear", "0000", "--cache-dir", str(root))
    assert code == 1

    manifest = root / "engine" / digests[1] / "manifest.json"
    data = json.loads(manifest.read_text())
    data["last_used"] -= 30 * 86400
    manifest.write_text(json.dumps(data))
    code, out = in_process(
        capsys, "cache", "prune", "--older-than", "7", "--json", "--cache-dir", str(root)
    )
    assert code == 0 and json.loads(out) == {"removed": [digests[1]]}

    code, out = in_process(capsys, "cache", "clear", digests[0], "--cache-dir", str(root))
    assert code == 0 and digests[0] in out
    assert EngineCache(root).entries() == []

    EngineCache(root).get_or_create(make_key(precision="fp16"), _create, artifact_name="m.bin")
    code, out = in_process(capsys, "cache", "clear", "--all", "--json", "--cache-dir", str(root))
    assert code == 0 and json.loads(out) == {"removed": 1}


def test_cache_dir_from_environment_and_empty_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PADDLEOCR_TRT_CACHE_DIR", str(tmp_path / "envcache"))
    code, out = in_process(capsys, "cache", "list", "--json")
    assert code == 0
    assert json.loads(out) == {
        "cache_dir": str(tmp_path / "envcache"),
        "size_bytes": 0,
        "entries": [],
    }
    code, _ = in_process(capsys, "cache")
    assert code == 2
