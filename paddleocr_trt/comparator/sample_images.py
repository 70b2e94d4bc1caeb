"""Rendered test images with known text, for real end-to-end OCR checks without a data set.

Every image covers one situation that has broken OCR accelerators before: many lines, CJK text,
a line far wider than a rec profile's typical width, an upside-down line (text-line orientation),
a very large page, a tiny crop, and the two odd file modes (single-channel, RGBA). Rendering is
deterministic (same fonts -> same pixels) and takes well under two seconds.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

CJK_FONT_APT_PACKAGE = "fonts-noto-cjk"
LATIN_FONT_APT_PACKAGE = "fonts-dejavu-core"

_LATIN_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
)
_CJK_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
)

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


class FontNotFoundError(RuntimeError):
    """A font needed to render the test images is not installed; the message names the package."""


@dataclass(frozen=True)
class SampleImage:
    """One rendered image file and the text it shows, top to bottom."""

    name: str
    path: Path
    lines: list[str]
    kind: str
    notes: str = ""

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class _Font:
    path: str
    index: int = 0

    def at(self, size: int) -> ImageFont.FreeTypeFont:
        return ImageFont.truetype(self.path, size, index=self.index)


def _fc_match(pattern: str) -> list[str]:
    """Font files fontconfig knows for ``pattern`` (empty when fontconfig is absent)."""
    if shutil.which("fc-list") is None:
        return []
    try:
        out = subprocess.run(
            ["fc-list", pattern, "file"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({line.split(":")[0].strip() for line in out.splitlines() if line.strip()})


@cache
def latin_font() -> _Font:
    for path in _LATIN_CANDIDATES:
        if Path(path).is_file():
            return _Font(path)
    for path in _fc_match(":family=DejaVu Sans:style=Book"):
        if path.endswith((".ttf", ".otf")):
            return _Font(path)
    raise FontNotFoundError(
        "DejaVu Sans is needed to render the Latin test images; install the Debian package "
        f"{LATIN_FONT_APT_PACKAGE} (apt-get install -y {LATIN_FONT_APT_PACKAGE})"
    )


@cache
def cjk_font() -> _Font:
    """A font with Simplified Chinese glyphs; for a .ttc, the face whose name says SC."""
    candidates = [p for p in _CJK_CANDIDATES if Path(p).is_file()]
    candidates += [p for p in _fc_match(":lang=zh-cn") if p not in candidates]
    for path in candidates:
        faces = range(10) if path.endswith(".ttc") else range(1)
        fallback: _Font | None = None
        for index in faces:
            try:
                family, _style = ImageFont.truetype(path, 20, index=index).getname()
            except OSError:
                break
            fallback = fallback or _Font(path, index)
            if family and family.rstrip().endswith("SC"):
                return _Font(path, index)
        if fallback is not None:
            return fallback
    raise FontNotFoundError(
        "no font with Chinese glyphs found (fc-list :lang=zh is empty); install the Debian "
        f"package {CJK_FONT_APT_PACKAGE} (apt-get update && apt-get install -y "
        f"{CJK_FONT_APT_PACKAGE})"
    )


def _render_lines(
    lines: Sequence[str],
    font: ImageFont.FreeTypeFont,
    *,
    margin: int,
    spacing: int,
    min_size: tuple[int, int] = (0, 0),
    mode: str = "RGB",
    fill: object = BLACK,
    background: object = WHITE,
) -> Image.Image:
    """Lines stacked top to bottom, left-aligned, the canvas sized to fit them."""
    boxes = [font.getbbox(line) for line in lines]
    line_height = max(b[3] for b in boxes) - min(b[1] for b in boxes)
    width = max(max(b[2] for b in boxes) + 2 * margin, min_size[0])
    height = max(len(lines) * line_height + (len(lines) - 1) * spacing + 2 * margin, min_size[1])
    image = Image.new(mode, (width, height), background)
    draw = ImageDraw.Draw(image)
    top = min(b[1] for b in boxes)
    for i, line in enumerate(lines):
        draw.text((margin, margin - top + i * (line_height + spacing)), line, font=font, fill=fill)
    return image


_ENGLISH_LINES = [
    "Invoice number 20481 issued on March 3",
    "Payment is due within thirty days",
    "Total amount 1250.75 USD",
    "Thank you for your business",
]
_CHINESE_LINES = [
    "今天天气很好",
    "我们一起学习中文",
    "北京欢迎你",
]
_LONG_LINE = (
    "The quick brown fox jumps over the lazy dog while seven wizards quietly "
    "judge the boxing match near the old harbor"
)
_ROTATED_LINE = "Flipped text line"
_LARGE_LINES = ["Large page heading", "Second line of the large page", "End of page"]
_TINY_WORD = "Hello"
_GRAY_LINES = ["Grayscale scan of a receipt", "Coffee 3.50"]
_RGBA_LINES = ["Transparent label 42", "Printed on film"]


def _english(out_dir: Path) -> SampleImage:
    image = _render_lines(_ENGLISH_LINES, latin_font().at(28), margin=40, spacing=24)
    return _save(
        image,
        out_dir,
        "english_document",
        _ENGLISH_LINES,
        "document",
        "four Latin lines, black on white",
    )


def _chinese(out_dir: Path) -> SampleImage:
    image = _render_lines(_CHINESE_LINES, cjk_font().at(36), margin=40, spacing=28)
    return _save(
        image,
        out_dir,
        "chinese_lines",
        _CHINESE_LINES,
        "cjk",
        f"Simplified Chinese, font {Path(cjk_font().path).name}",
    )


def _long_line(out_dir: Path) -> SampleImage:
    image = _render_lines([_LONG_LINE], latin_font().at(44), margin=30, spacing=0)
    return _save(
        image,
        out_dir,
        "long_line",
        [_LONG_LINE],
        "long_line",
        f"one line {image.width} px wide (rec width beyond the typical 320)",
    )


def _rotated(out_dir: Path) -> SampleImage:
    image = _render_lines([_ROTATED_LINE], latin_font().at(28), margin=30, spacing=0).rotate(180)
    return _save(
        image,
        out_dir,
        "rotated_180",
        [_ROTATED_LINE],
        "rotated",
        "one line rotated 180 degrees: needs text-line orientation to read",
    )


def _large(out_dir: Path) -> SampleImage:
    image = _render_lines(
        _LARGE_LINES, latin_font().at(96), margin=200, spacing=160, min_size=(3200, 1400)
    )
    return _save(
        image,
        out_dir,
        "large_page",
        _LARGE_LINES,
        "large",
        f"{image.width}x{image.height}: long side above 3000 px",
    )


def _tiny(out_dir: Path) -> SampleImage:
    font = latin_font().at(20)
    image = Image.new("RGB", (100, 32), WHITE)
    left, top, right, bottom = font.getbbox(_TINY_WORD)
    xy = ((100 - (right - left)) // 2 - left, (32 - (bottom - top)) // 2 - top)
    ImageDraw.Draw(image).text(xy, _TINY_WORD, font=font, fill=BLACK)
    return _save(image, out_dir, "tiny_word", [_TINY_WORD], "tiny", "100x32, one short word")


def _grayscale(out_dir: Path) -> SampleImage:
    image = _render_lines(
        _GRAY_LINES, latin_font().at(30), margin=36, spacing=22, mode="L", fill=20, background=235
    )
    return _save(
        image, out_dir, "grayscale", _GRAY_LINES, "grayscale", "single-channel (mode L) PNG"
    )


def _rgba(out_dir: Path) -> SampleImage:
    # Opaque light label on a half-transparent white sheet: readers that drop alpha (OpenCV's
    # IMREAD_COLOR) still see dark text on a light background, as with real RGBA scans.
    image = _render_lines(
        _RGBA_LINES,
        latin_font().at(30),
        margin=36,
        spacing=22,
        mode="RGBA",
        fill=(10, 30, 90, 255),
        background=(250, 250, 245, 128),
    )
    return _save(image, out_dir, "rgba", _RGBA_LINES, "rgba", "RGBA PNG, partly transparent")


def _save(
    image: Image.Image, out_dir: Path, name: str, lines: list[str], kind: str, notes: str
) -> SampleImage:
    from ..cache.safety import write_bytes_atomic

    path = out_dir / f"{name}.png"
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    # a new file renamed into place: concurrent readers never see half a PNG, and a link
    # planted at ``path`` is replaced, not written through
    write_bytes_atomic(path, buffer.getvalue(), durable=False, mode=0o644)
    return SampleImage(name=name, path=path, lines=list(lines), kind=kind, notes=notes)


_RENDERERS = (_english, _chinese, _long_line, _rotated, _large, _tiny, _grayscale, _rgba)


def render_sample_images(out_dir: str | Path) -> list[SampleImage]:
    """Render the whole set into ``out_dir`` (created if needed); same input -> same pixels."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [render(out) for render in _RENDERERS]


def render_sample_image_bytes() -> list[tuple[str, bytes]]:
    """The set as (file name, PNG bytes), for a caller that stores them itself (the cache
    writes them through its directory descriptors); rendered in a private temp dir."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="paddleocr_trt-images-") as tmp:
        return [(s.path.name, s.path.read_bytes()) for s in render_sample_images(tmp)]
