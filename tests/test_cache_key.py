"""Cache keys and model fingerprints: what makes two artifacts the same, on real model files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.cache import make_key

from paddleocr_trt.cache import CacheKey, FileHashIndex, fingerprint_model_dir
from paddleocr_trt.errors import ModelDirError
from paddleocr_trt.model_types import locate_model_files

# -- keys ------------------------------------------------------------------------------------

ENGINE_CHANGES = {
    "model_fingerprint": "e" * 64,
    "model_type": "detection",
    "precision": "fp32",
    "profiles": [{"x": ((1, 3, 48, 320), (6, 3, 48, 320), (6, 3, 48, 2400))}],
    "builder_settings": {"workspace_bytes": 2 << 30, "tf32": True, "optimization_level": 3},
    "converter_versions": {"paddlepaddle": "3.3.1", "paddle2onnx": "2.1.0", "onnx": "1.17.0"},
    "tensorrt_version": "11.4.0",
    "gpu_name": "NVIDIA H200",
    "compute_capability": "9.1",
}


@pytest.mark.parametrize("field", sorted(ENGINE_CHANGES))
def test_engine_key_digest_changes_with_every_field(field: str) -> None:
    base = make_key(kind="engine")
    changed = make_key(kind="engine", **{field: ENGINE_CHANGES[field]})
    assert getattr(changed, field) != getattr(base, field)
    assert changed.digest != base.digest
    assert changed != base


def test_kind_is_part_of_the_key() -> None:
    onnx, engine = make_key(), make_key(kind="engine", precision="fp32")
    assert onnx.digest != engine.digest


def test_equal_keys_from_equivalent_spellings() -> None:
    a = make_key(
        model_type="rec",
        profiles=[{"x": ((1, 3, 48, 320), (6, 3, 48, 320), (6, 3, 48, 3200))}],
        builder_settings={"b": 1, "a": [1, 2]},
    )
    b = make_key(
        model_type="recognition",
        profiles=[{"x": {"min": [1, 3, 48, 320], "opt": (6, 3, 48, 320), "max": [6, 3, 48, 3200]}}],
        builder_settings={"a": (1, 2), "b": 1},
    )
    assert a == b and a.digest == b.digest and hash(a) == hash(b)


def test_round_trip_through_dict_and_stable_across_processes() -> None:
    key = make_key(kind="engine", compute_capability=(8, 6))
    assert key.compute_capability == "8.6"
    again = CacheKey.from_dict(key.to_dict())
    assert again == key and again.digest == key.digest
    assert len(key.digest) == 24 and int(key.digest, 16) >= 0
    code = (
        "import json, sys; from paddleocr_trt.cache import CacheKey; "
        "print(CacheKey.from_dict(json.loads(sys.argv[1])).digest)"
    )
    import json

    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(key.to_dict())],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    )
    assert out.stdout.strip() == key.digest


def test_engine_key_requires_tensorrt_and_gpu_and_onnx_key_refuses_them() -> None:
    with pytest.raises(ValueError, match="tensorrt_version"):
        make_key(kind="engine", gpu_name=None)
    with pytest.raises(ValueError, match="must not carry"):
        make_key(tensorrt_version="10.16.1")
    with pytest.raises(ValueError, match="kind"):
        make_key(kind="plan")


# -- fingerprints (real PP-OCRv4 model dirs) -------------------------------------------------


def test_same_content_at_two_paths_has_one_fingerprint(
    aged_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    source = aged_model_dirs["detection"]
    copy = tmp_path / "elsewhere" / "det"
    shutil.copytree(source, copy)
    index = FileHashIndex(tmp_path / "idx")
    a, b = fingerprint_model_dir(source, index), fingerprint_model_dir(copy, index)
    assert a.digest == b.digest
    assert set(a.files) == {"inference.pdmodel", "inference.pdiparams", "inference.yml"}
    rec = fingerprint_model_dir(aged_model_dirs["recognition"], index)
    assert rec.digest != a.digest


def test_warm_index_reads_nothing_and_persists_across_processes(
    aged_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    model = aged_model_dirs["recognition"]
    total = sum(p.stat().st_size for p in locate_model_files(model).files)
    index_dir = tmp_path / "idx"
    t0 = time.perf_counter()
    cold = fingerprint_model_dir(model, FileHashIndex(index_dir))
    cold_s = time.perf_counter() - t0
    assert cold.bytes_hashed == total
    t0 = time.perf_counter()
    warm = fingerprint_model_dir(model, FileHashIndex(index_dir))  # fresh object: reads disk
    warm_s = time.perf_counter() - t0
    assert warm.digest == cold.digest and warm.bytes_hashed == 0
    code = (
        "import sys; from pathlib import Path; from paddleocr_trt.cache import *; "
        "f = fingerprint_model_dir(sys.argv[1], FileHashIndex(Path(sys.argv[2]))); "
        "print(f.digest, f.bytes_hashed)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(model), str(index_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [cold.digest, "0"]
    print(
        f"\nrec fingerprint: cold {cold_s * 1e3:.1f} ms ({total} bytes), warm {warm_s * 1e3:.2f} ms"
    )


def test_touch_keeps_fingerprint_and_content_change_alters_it(
    aged_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    model = aged_model_dirs["scratch"]
    index = FileHashIndex(tmp_path / "idx")
    before = fingerprint_model_dir(model, index)
    params = model / "inference.pdiparams"
    st = params.stat()
    os.utime(params, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    touched = fingerprint_model_dir(model, index)
    assert touched.digest == before.digest
    assert touched.bytes_hashed == st.st_size  # only the touched file was read again
    with open(model / "inference.yml", "a") as handle:
        handle.write("# edited\n")
    edited = fingerprint_model_dir(model, index)
    assert edited.digest != before.digest


def test_not_a_model_dir(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelDirError, match="not a Paddle inference model"):
        fingerprint_model_dir(tmp_path)
