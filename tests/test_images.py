"""The rendered sample set: the shapes and modes it promises, and that real PaddleOCR reads it."""

from __future__ import annotations

import time
import unicodedata
from pathlib import Path

import pytest
from PIL import Image

from paddleocr_trt.comparator.metrics import character_error_rate
from paddleocr_trt.testing.images import SampleImage, render_sample_images
from paddleocr_trt.testing.models import OCRModelSet

EXPECTED_NAMES = {
    "english_document",
    "chinese_lines",
    "long_line",
    "rotated_180",
    "large_page",
    "tiny_word",
    "grayscale",
    "rgba",
}


def test_set_is_complete_and_files_exist(sample_images: list[SampleImage]) -> None:
    assert {s.name for s in sample_images} == EXPECTED_NAMES
    for sample in sample_images:
        assert sample.path.is_file() and sample.path.stat().st_size > 0
        assert sample.lines and all(line.strip() for line in sample.lines)
        with Image.open(sample.path) as image:
            assert image.format == "PNG"


def test_sizes_and_modes(sample_images_by_name: dict[str, SampleImage]) -> None:
    def size(name: str) -> tuple[int, int]:
        with Image.open(sample_images_by_name[name].path) as image:
            return image.size

    def mode(name: str) -> str:
        with Image.open(sample_images_by_name[name].path) as image:
            return image.mode

    assert size("long_line")[0] > 1500 and len(sample_images_by_name["long_line"].lines) == 1
    assert max(size("large_page")) > 3000
    tiny_w, tiny_h = size("tiny_word")
    assert tiny_w <= 128 and tiny_h <= 48
    assert len(sample_images_by_name["english_document"].lines) >= 3
    assert mode("grayscale") == "L"
    assert mode("rgba") == "RGBA"
    with Image.open(sample_images_by_name["rgba"].path) as image:
        alpha = image.getchannel("A")
        assert alpha.getextrema()[0] < 255, "the RGBA sample must really be partly transparent"
    for name in EXPECTED_NAMES - {"grayscale", "rgba"}:
        assert mode(name) == "RGB", name


def test_chinese_lines_are_cjk(sample_images_by_name: dict[str, SampleImage]) -> None:
    for line in sample_images_by_name["chinese_lines"].lines:
        assert all("CJK UNIFIED IDEOGRAPH" in unicodedata.name(ch) for ch in line), line


def test_rendering_is_deterministic_and_fast(
    sample_images: list[SampleImage], tmp_path: Path
) -> None:
    start = time.perf_counter()
    again = render_sample_images(tmp_path)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"rendering took {elapsed:.2f} s"
    for first, second in zip(sample_images, again, strict=True):
        assert first.lines == second.lines
        assert first.path.read_bytes() == second.path.read_bytes(), first.name


@pytest.fixture(scope="module")
def plain_paddleocr(ocr_models: OCRModelSet) -> object:
    from paddleocr import PaddleOCR

    return PaddleOCR(**ocr_models.paddleocr_kwargs(textline_orientation=True), device="cpu")


@pytest.mark.slow
def test_plain_paddleocr_reads_every_sample(
    plain_paddleocr: object, sample_images: list[SampleImage]
) -> None:
    """The ground truth is what a correct pipeline outputs: checks the harness, not the models.

    Spaces are ignored: the PP-OCRv4 Chinese rec model drops many spaces between Latin words.
    """
    failures = []
    for sample in sample_images:
        result = plain_paddleocr.predict(str(sample.path))[0]  # type: ignore[attr-defined]
        texts = list(result["rec_texts"])
        cer = character_error_rate(sample.text, "\n".join(texts), ignore_spaces=True)
        if cer >= 0.05 or len(texts) != len(sample.lines):
            failures.append(f"{sample.name}: CER {cer:.3f}, read {texts!r}")
        if sample.kind == "rotated":
            assert list(result["textline_orientation_angles"]) == [1], result[
                "textline_orientation_angles"
            ]
    assert not failures, "\n".join(failures)
