"""Input rows for batch OCR, and how a worker turns one row into pages (or an error).

A row has ``input_id`` (int64: the output is ordered by it), ``path`` (a file every worker can
read: a shared file system) or ``data`` (the file's bytes: objects from storage), and ``name``
(what the output's ``input`` column shows). Files are images or PDFs (TIFF pages too), told
apart by content for bytes and by suffix for paths, as PaddleX does.

A worker checks each input before OCR (exists, opens, has pages), so that a corrupt file is an
error row of its own and never fails the batch around it.
"""

from __future__ import annotations

import glob
import hashlib
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: what PaddleX's ImageBatchSampler reads (by suffix)
IMAGE_SUFFIXES = (
    ".bmp", ".dib", ".jpeg", ".jpg", ".png", ".webp", ".pbm", ".pgm", ".ppm", ".pnm", ".sr",
    ".ras",
)  # fmt: skip
TIFF_SUFFIXES = (".tif", ".tiff")
PDF_SUFFIXES = (".pdf",)
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + TIFF_SUFFIXES + PDF_SUFFIXES


def expand(inputs: str | os.PathLike | Iterable[Any]) -> list[Any]:
    """Paths, globs (``scans/**/*.pdf``), directories (their supported files, sorted) and bytes,
    flattened in the order given; each glob's matches sorted."""
    if isinstance(inputs, (str, os.PathLike, bytes)):
        inputs = [inputs]
    out: list[Any] = []
    for item in inputs:
        if isinstance(item, (bytes, bytearray, memoryview, tuple)):
            out.append(item)
            continue
        text = os.fspath(item)
        if os.path.isdir(text):
            found = (
                os.path.join(root, f)
                for root, _, files in os.walk(text)
                for f in files
                if f.lower().endswith(SUPPORTED_SUFFIXES)
            )
            out.extend(sorted(found))
        elif glob.has_magic(text):
            out.extend(sorted(glob.glob(text, recursive=True)))
        else:
            out.append(text)
    return out


def rows_from(inputs: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per input, ``input_id`` = its position. Bytes may come as ``(name, bytes)``."""
    rows = []
    for index, item in enumerate(inputs):
        if isinstance(item, tuple):
            name, data = item
            rows.append({"input_id": index, "path": None, "data": bytes(data), "name": str(name)})
        elif isinstance(item, (bytes, bytearray, memoryview)):
            rows.append({"input_id": index, "path": None, "data": bytes(item), "name": None})
        else:
            path = os.path.abspath(os.fspath(item))
            rows.append({"input_id": index, "path": path, "data": None, "name": path})
    return rows


def stable_id(row: dict[str, Any]) -> int:
    """An id for a row of a user's dataset that has none: a hash of its path or bytes."""
    source = row.get("path")
    blob = source.encode() if isinstance(source, str) else bytes(row.get("data") or b"")
    return int.from_bytes(hashlib.sha256(blob).digest()[:7], "big")


@dataclass
class PreparedInput:
    """One input ready for OCR: the path PaddleOCR reads, its page count, or why it cannot be."""

    input_id: int
    name: str
    path: str | None = None
    pages: int = 1
    paged: bool = False  # PDF/TIFF: rows carry page indices
    error: str | None = None
    seconds: float = 0.0
    temporary: bool = False

    def cleanup(self) -> None:
        if self.temporary and self.path:
            Path(self.path).unlink(missing_ok=True)


def _sniff_suffix(data: bytes) -> str:
    if data[:5] == b"%PDF-":
        return ".pdf"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ".tif"
    return ".png"  # cv2 decodes by content; the suffix only routes PaddleX's sampler


def prepare(row: dict[str, Any], tmp_dir: str) -> PreparedInput:
    """Check one input (exists, decodes, has pages); bytes go to a private temp file."""
    started = time.perf_counter()
    data = row.get("data")
    name = row.get("name") or row.get("path") or f"<bytes {row['input_id']}>"
    item = PreparedInput(int(row["input_id"]), str(name))
    try:
        if data is not None:
            data = bytes(data)
            suffix = _sniff_suffix(data)
            path = os.path.join(tmp_dir, f"in-{item.input_id}-{os.urandom(6).hex()}{suffix}")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(path, flags, 0o600)
            item.path, item.temporary = path, True
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        else:
            item.path = str(row["path"])
            if not os.path.isfile(item.path):
                raise ValueError("file not found")
        _count_pages(item)
    except Exception as exc:
        item.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
        item.cleanup()
    item.seconds = time.perf_counter() - started
    return item


def _count_pages(item: PreparedInput) -> None:
    assert item.path is not None
    suffix = Path(item.path).suffix.lower()
    if suffix in PDF_SUFFIXES:
        item.pages, item.paged = pdf_pages(item.path), True
        if item.pages == 0:
            raise ValueError("PDF has no pages")
    elif suffix in TIFF_SUFFIXES:
        from PIL import Image

        with Image.open(item.path) as img:
            item.pages, item.paged = int(getattr(img, "n_frames", 1)), True
    elif suffix in IMAGE_SUFFIXES:
        import cv2
        import numpy as np

        raw = np.fromfile(item.path, dtype=np.uint8)
        if raw.size == 0 or cv2.imdecode(raw, cv2.IMREAD_COLOR) is None:
            raise ValueError("not a readable image (corrupt or unknown format)")
    else:
        raise ValueError(
            f"unsupported file type {suffix or '(no suffix)'}: PaddleOCR reads images "
            f"({', '.join(IMAGE_SUFFIXES + TIFF_SUFFIXES)}) and PDFs"
        )


def pdf_pages(path: str) -> int:
    """Page count through pypdfium2 (PaddleX's PDF reader), under PaddleX's pdfium lock."""
    import pypdfium2 as pdfium

    try:
        from paddlex.inference.utils.pdfium_lock import pdfium_lock
    except ImportError:  # pragma: no cover - older PaddleX
        import threading

        pdfium_lock = threading.Lock()
    with pdfium_lock:
        try:
            doc = pdfium.PdfDocument(path)
        except Exception as exc:
            raise ValueError(f"not a readable PDF ({exc})") from exc
        try:
            return len(doc)
        finally:
            doc.close()
