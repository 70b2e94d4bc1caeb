"""Rendered multi-page workloads for throughput benchmarks (the tests' sample images stay as
they are: they cover edge cases, these cover volume).

A mix like a document-processing queue: narrow receipts of varying height, 1000x1400 document
pages with 20-40 lines, and one 3000x4000 page. Text is drawn from a fixed word list with a
seeded generator, so the same ``seed`` gives the same pixels.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .images import BLACK, WHITE, SampleImage, cjk_font, latin_font

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


_CHINESE = (
    "发票金额合计日期付款订单号码客户账户余额税费小计数量单价运费地址城市邮编电话合同服务报告"
)


def _photo(rng: random.Random) -> tuple[Image.Image, list[str]]:
    """A 4000x3000 camera-sized frame: a sign on a textured, shaded background."""
    gen = np.random.default_rng(rng.randrange(2**32))
    y, x = np.mgrid[0:3000, 0:4000]
    base = 90 + 60 * np.sin(x / 700.0) + 40 * np.cos(y / 500.0)
    noise = gen.normal(0, 12, (3000, 4000))
    gray = np.clip(base + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(np.stack([gray, (gray * 0.9).astype(np.uint8), gray // 2 + 40], -1))
    lines = [_line(rng, rng.randint(2, 5)) for _ in range(6)]
    sign = _page((2400, 1200), lines, 110, 90, 60)
    image.paste(sign, (800, 900))
    return image.filter(ImageFilter.GaussianBlur(1.2)), lines


def _blank(rng: random.Random) -> tuple[Image.Image, list[str]]:
    """A near-empty scan: paper tone and faint speckle, no text (det finds nothing or dust)."""
    gen = np.random.default_rng(rng.randrange(2**32))
    gray = np.clip(gen.normal(243, 3, (1400, 1000)), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB"), []


def _dark(rng: random.Random) -> tuple[Image.Image, list[str]]:
    """An under-exposed document: light grey text on a dark page."""
    image, lines = _document(rng)
    arr = np.asarray(image, dtype=np.float32)
    return Image.fromarray((25 + arr * 0.25).astype(np.uint8)), lines


def _noisy(rng: random.Random) -> tuple[Image.Image, list[str]]:
    """A document under heavy sensor noise."""
    gen = np.random.default_rng(rng.randrange(2**32))
    image, lines = _document(rng)
    arr = np.asarray(image, dtype=np.float32) + gen.normal(0, 40, (1400, 1000, 1))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), lines


def _chinese_page(rng: random.Random) -> tuple[Image.Image, list[str]]:
    lines = ["".join(rng.choice(_CHINESE) for _ in range(rng.randint(4, 14))) for _ in range(16)]
    image = Image.new("RGB", (1000, 1400), WHITE)
    draw = ImageDraw.Draw(image)
    font = cjk_font().at(36)
    for i, line in enumerate(lines):
        draw.text((60, 60 + i * 80), line, font=font, fill=BLACK)
    return image, lines


#: page class -> renderer; ``render_varied_pages`` cycles through them in this order
VARIED_KINDS = {
    "document": _document,
    "receipt": _receipt,
    "photo": _photo,
    "blank": _blank,
    "dark": _dark,
    "noisy": _noisy,
    "chinese": _chinese_page,
}


def render_varied_pages(
    out_dir: str | Path, count: int = 12, *, seed: int = 0, kinds: tuple[str, ...] = ()
) -> list[SampleImage]:
    """``count`` pages cycling through ``kinds`` (default: every class of ``VARIED_KINDS``,
    documents twice per cycle as in a real queue): what a throughput comparison should see,
    not only clean documents. PNG files in ``out_dir``, ``SampleImage.kind`` = the page class."""
    order = kinds or (
        "document",
        "receipt",
        "photo",
        "document",
        "blank",
        "dark",
        "noisy",
        "chinese",
    )
    unknown = [k for k in order if k not in VARIED_KINDS]
    if unknown:
        raise ValueError(f"unknown page classes {unknown}; known: {sorted(VARIED_KINDS)}")
    rng = random.Random(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pages = []
    for index in range(count):
        kind = order[index % len(order)]
        image, lines = VARIED_KINDS[kind](rng)
        name = f"varied_{index:03d}_{kind}"
        path = out / f"{name}.png"
        image.save(path, format="PNG")
        pages.append(
            SampleImage(
                name, path, lines, kind, f"{image.width}x{image.height}, {len(lines)} lines"
            )
        )
    return pages
