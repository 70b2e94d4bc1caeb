"""Fixtures for the benchmark suite (run: ``pytest benchmarks --benchmark-json=out.json``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from paddleocr_trt.testing.images import SampleImage, render_sample_images
from paddleocr_trt.testing.models import OCRModelSet, prepare_models

os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("PADDLEOCR_TRT_TEST_CACHE", REPO_ROOT / ".cache" / "test"))


@pytest.fixture(scope="session")
def ocr_models() -> OCRModelSet:
    return prepare_models(WORK / "models", "legacy")


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory: pytest.TempPathFactory) -> list[SampleImage]:
    return render_sample_images(tmp_path_factory.mktemp("bench_images"))


@pytest.fixture(scope="session")
def engine_cache_dir() -> str:
    """Engines built by benchmarks live beside the test cache, not in the user's cache."""
    path = WORK / "engine-cache"
    os.environ.setdefault("PADDLEOCR_TRT_CACHE_DIR", str(path))
    return os.environ["PADDLEOCR_TRT_CACHE_DIR"]
