"""Moved to :mod:`paddleocr_trt.comparator.sample_images`: the library renders its validation
images itself and must not import ``testing``; this name stays for tests and benchmarks."""

from __future__ import annotations

from ..comparator.sample_images import (  # noqa: F401
    BLACK,
    CJK_FONT_APT_PACKAGE,
    LATIN_FONT_APT_PACKAGE,
    WHITE,
    FontNotFoundError,
    SampleImage,
    cjk_font,
    latin_font,
    render_sample_images,
)
