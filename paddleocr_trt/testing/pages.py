"""Rendered multi-page workloads for throughput benchmarks (the tests' sample images stay as
they are: they cover edge cases, these cover volume).

A mix like a document-processing queue: narrow receipts of varying height, 1000x1400 document
pages with 20-40 lines, and one 3000x4000 page. Text is drawn from a fixed word list with a
seeded generator, so the same ``seed`` gives the same pixels.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

from .images import BLACK, WHITE, SampleImage, latin_font

_WORD_TEXT = """
invoice total amount due date payment order number customer account balance tax
subtotal item quantity price unit shipping address street city postal code phone
reference contract delivery service period monthly annual report summary section
page chapter table figure result analysis method sample value average increase
"""
_WORDS = _WORD_TEXT.split()


def _line(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(words))
    if rng.random() < 0.4:
        text += f" {rng.randint(1, 99999)}.{rng.randint(0, 99):02d}"
    return text[0].upper() + text[1:]


def _page(
    size: tuple[int, int], lines: list[str], font_px: int, margin: int, spacing: int
) -> Image.Image:
    image = Image.new("RGB", size, WHITE)
    draw = ImageDraw.Draw(image)
    font = latin_font().at(font_px)
    y = margin
    for line in lines:
        draw.text((margin, y), line, font=font, fill=BLACK)
        y += font_px + spacing
    return image


def _receipt(rng: random.Random) -> tuple[Image.Image, list[str]]:
    count = rng.randint(12, 24)
    lines = [_line(rng, rng.randint(1, 3)) for _ in range(count)]
    height = 80 + count * 44
    return _page((560, height), lines, 24, 30, 20), lines


def _document(rng: random.Random) -> tuple[Image.Image, list[str]]:
    count = rng.randint(20, 40)
    font_px = 26 if count <= 30 else 20
    spacing = (1400 - 120 - count * font_px) // count
    lines = [_line(rng, rng.randint(2, 9 if font_px == 26 else 11)) for _ in range(count)]
    return _page((1000, 1400), lines, font_px, 60, spacing), lines


def _large(rng: random.Random) -> tuple[Image.Image, list[str]]:
    count = 40
    lines = [_line(rng, rng.randint(3, 10)) for _ in range(count)]
    return _page((3000, 4000), lines, 60, 150, 32), lines


def render_pages(out_dir: str | Path, count: int = 20, *, seed: int = 0) -> list[SampleImage]:
    """``count`` pages (at least 3): receipts and 1000x1400 documents interleaved, the one
    3000x4000 page in the middle. PNG files in ``out_dir``, in reading order."""
    if count < 3:
        raise ValueError(f"count={count}: the mix needs at least 3 pages")
    rng = random.Random(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pages = []
    for index in range(count):
        if index == count // 2:
            kind, (image, lines) = "large", _large(rng)
        elif index % 3 == 0:
            kind, (image, lines) = "receipt", _receipt(rng)
        else:
            kind, (image, lines) = "document", _document(rng)
        name = f"page_{index:03d}_{kind}"
        path = out / f"{name}.png"
        image.save(path, format="PNG")
        pages.append(
            SampleImage(
                name, path, lines, kind, f"{image.width}x{image.height}, {len(lines)} lines"
            )
        )
    return pages
