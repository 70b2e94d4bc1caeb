"""What a process start pays for a cache hit on the real PP-OCRv4 models and their real ONNX
files: fingerprint the model dir, build the key, check the manifest and files (target < 50 ms
per model once the hash index is warm)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from fixtures.cache import run_worker

from paddleocr_trt.cache import CacheKey, EngineCache
from paddleocr_trt.cache.hashindex import INDEX_FILE_NAME, RACY_WINDOW_S
from paddleocr_trt.model_types import ModelType

TARGET_S = 0.050


@pytest.mark.slow
def test_cache_hit_time_per_model(
    aged_model_dirs: dict[str, Path], onnx_models: dict[ModelType, Any], cache_root: Path
) -> None:
    cache = EngineCache(cache_root)
    models = {}
    for model_type, conversion in onnx_models.items():
        model_dir = aged_model_dirs[model_type.value]
        key = CacheKey(
            model_fingerprint=cache.fingerprint(model_dir).digest,
            model_type=model_type,
            kind="onnx",
            precision="fp32",
            converter_versions=conversion.versions,
        )

        def copy(tmp_dir: Path, source: Path = conversion.onnx_path) -> Path:
            return Path(shutil.copy(source, tmp_dir / "model.onnx"))

        cache.get_or_create(key, copy, artifact_name="model.onnx")
        models[model_type.value] = {"model_dir": str(model_dir), "key": key.to_dict()}
    time.sleep(RACY_WINDOW_S + 0.1)  # let the new artifacts become trustable to the index

    (cache_root / INDEX_FILE_NAME).unlink()
    job = {"op": "bench", "root": str(cache_root), "models": models}
    cold = run_worker(job)  # new process, no hash index: reads weights and artifacts
    warm = run_worker(job)  # new process, index written by the previous one
    lines = []
    for name in models:
        assert cold[name]["hit"] and warm[name]["hit"]
        assert cold[name]["bytes_hashed"] > 0 and warm[name]["bytes_hashed"] == 0
        lines.append(
            f"{name:>15}: cold {cold[name]['seconds'] * 1e3:6.1f} ms, "
            f"warm {warm[name]['seconds'] * 1e3:5.2f} ms"
        )
    print("\ncache hit per model (fingerprint + key + get), fresh processes:\n" + "\n".join(lines))
    assert max(w["seconds"] for w in warm.values()) < TARGET_S, warm
