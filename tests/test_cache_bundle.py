"""``cache export/import``: a bundle carries validated entries between caches, and an archive
that is hostile (links, climbing paths, bad checksums, failed validation, wrong key) imports
nothing it should not. Real caches, real tar files, the real CLI."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from paddleocr_trt.cache.bundle import BundleError, export_bundle, import_bundle
from paddleocr_trt.cache.key import CacheKey
from paddleocr_trt.cache.store import EngineCache
from paddleocr_trt.cli.main import main


def _key(n: int, kind: str = "onnx", **extra) -> CacheKey:
    return CacheKey(
        model_fingerprint=f"model-{n}", model_type="det", kind=kind, precision="fp32", **extra
    )


def _make(cache: EngineCache, key: CacheKey, payload: bytes, passed: bool | None = True) -> None:
    def create(tmp: Path) -> Path:
        (tmp / "model.onnx").write_bytes(payload)
        (tmp / "extra").mkdir()
        (tmp / "extra" / "weights.bin").write_bytes(payload[::-1])
        return tmp / "model.onnx"

    validate = None if passed is None else (lambda _p: {"passed": passed, "agreement": 1.0})
    cache.get_or_create(
        key, create, artifact_name="model.onnx", validate_fn=validate, keep_extra_files=True
    )


@pytest.fixture
def source(tmp_path: Path) -> EngineCache:
    cache = EngineCache(tmp_path / "src")
    _make(cache, _key(1), b"first model " * 100)
    _make(cache, _key(2), b"second model " * 100)
    engine = _key(
        3, "engine", tensorrt_version="1.7.1", gpu_name="RTX 4090", compute_capability="8.9"
    )
    _make(cache, engine, b"plan bytes " * 50)
    _make(cache, _key(4), b"never validated", passed=None)
    return cache


def _files(cache: EngineCache) -> dict[str, dict[str, bytes]]:
    out = {}
    for entry in cache.entries():
        out[entry.digest] = {n: (entry.path / n).read_bytes() for n in entry.manifest["files"]}
    return out


def test_round_trip_keeps_keys_files_and_validation(source: EngineCache, tmp_path: Path) -> None:
    report = export_bundle(source, tmp_path / "b.tar.gz")
    unvalidated = _key(4).digest
    assert set(report.skipped) == {unvalidated}  # no passed validation: not exported
    assert report.targets == [
        {"tensorrt_version": "1.7.1", "gpu_name": "RTX 4090", "compute_capability": "8.9"}
    ]
    dest = EngineCache(tmp_path / "dest")
    result = import_bundle(dest, tmp_path / "b.tar.gz")
    assert sorted(result.imported) == sorted(report.exported) and not result.rejected
    want = {d: f for d, f in _files(source).items() if d != unvalidated}
    assert _files(dest) == want
    for digest in want:
        entry = dest.info(digest)
        assert entry is not None and entry.problem is None
        original = source.info(digest)
        assert entry.key_fields == original.key_fields
        assert entry.validation == original.validation
        assert entry.metadata["imported"]["built"] == original.manifest["created"]
        assert dest.get(entry.key) is not None  # served to a lookup by the same key
        mode = os.stat(entry.artifact_path).st_mode & 0o777
        assert mode == 0o600
    again = import_bundle(dest, tmp_path / "b.tar.gz")
    assert sorted(again.present) == sorted(want) and not again.imported


def _rewrite(bundle: Path, out: Path, edit) -> None:
    """Copy a bundle member by member through ``edit(info, data) -> [(info, data), ...]``."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w:gz") as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read() if info.isfile() else b""
            for new_info, new_data in edit(info, data):
                new_info.size = len(new_data)
                dst.addfile(new_info, io.BytesIO(new_data) if new_info.isfile() else None)


@pytest.fixture
def bundle(source: EngineCache, tmp_path: Path) -> Path:
    export_bundle(source, tmp_path / "good.tar.gz")
    return tmp_path / "good.tar.gz"


def _link(kind: bytes):
    def edit(info, data):
        yield info, data
        if info.name.endswith("model.onnx") and not getattr(edit, "done", False):
            edit.done = True
            link = tarfile.TarInfo(info.name.rsplit("/", 1)[0] + "/evil")
            link.type, link.linkname = kind, "/etc/passwd"
            yield link, b""

    return edit


@pytest.mark.parametrize(
    "edit, words",
    [
        (_link(tarfile.SYMTYPE), "is a link"),
        (_link(tarfile.LNKTYPE), "is a link"),
        (lambda i, d: [(i, d), (tarfile.TarInfo("../../outside"), b"x")], "outside the bundle"),
        (lambda i, d: [(i, d), (tarfile.TarInfo("/tmp/abs"), b"x")], "outside the bundle"),
        (lambda i, d: [(i, d), (tarfile.TarInfo("entries/onnx/loose"), b"x")], "not inside"),
    ],
)
def test_links_and_foreign_paths_reject_the_whole_archive(
    bundle: Path, tmp_path: Path, edit, words: str
) -> None:
    bad = tmp_path / "bad.tar.gz"
    _rewrite(bundle, bad, edit)
    dest = EngineCache(tmp_path / "dest")
    with pytest.raises(BundleError, match=words):
        import_bundle(dest, bad)
    assert dest.entries() == []


def test_bad_checksum_key_or_validation_rejects_that_entry(bundle: Path, tmp_path: Path) -> None:
    targets: dict[str, str] = {}

    def edit(info, data):
        parts = info.name.split("/")
        if len(parts) < 4:
            return [(info, data)]
        digest = parts[2]
        if digest not in targets:
            targets[digest] = ["checksum", "key", "validation"][len(targets)]
        victim = targets[digest]
        if victim == "checksum" and parts[-1] == "weights.bin":
            data = bytes([data[0] ^ 1]) + data[1:]  # same size, other bytes
        elif parts[-1] == "manifest.json" and victim != "checksum":
            manifest = json.loads(data)
            if victim == "key":
                manifest["key"]["precision"] = "fp16"
            else:
                manifest["validation"]["passed"] = False
            data = json.dumps(manifest).encode()
        return [(info, data)]

    bad = tmp_path / "bad.tar.gz"
    _rewrite(bundle, bad, edit)
    dest = EngineCache(tmp_path / "dest")
    report = import_bundle(dest, bad)
    assert not report.imported and dest.entries() == []
    by_victim = {targets[d]: why for d, why in report.rejected.items()}
    assert "checksum" in by_victim["checksum"]
    assert "does not hash" in by_victim["key"]
    assert "validation" in by_victim["validation"]
    assert not list((tmp_path / "dest" / "tmp").iterdir())  # no build leftovers


def test_cli_export_import_json(source: EngineCache, tmp_path: Path, capsys) -> None:
    archive = tmp_path / "fleet.tar.gz"
    assert main(["cache", "export", str(archive), "--cache-dir", str(source.root), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)["exported"]
    dest = tmp_path / "dest"
    assert main(["cache", "import", str(archive), "--cache-dir", str(dest), "--json"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)["imported"]) == sorted(exported)
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    code = main(["cache", "import", str(tmp_path / "junk.tar.gz"), "--cache-dir", str(dest)])
    captured = capsys.readouterr()
    assert code == 1 and captured.err.startswith("error: ") and len(captured.err.splitlines()) == 1
