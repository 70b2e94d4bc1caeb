"""What ``demo`` reads: files, PDFs and directories expanded into a list, checked up front."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: what PaddleOCR reads (PaddleX's image reader and its PDF reader)
SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pdf"})


@dataclass(frozen=True)
class DemoInput:
    name: str
    path: Path
    expected: list[str] | None = None


def expand_inputs(paths: list[Path]) -> list[DemoInput]:
    """Files as given; a directory gives its images and PDFs (sorted, not recursive).
    ValueError (a usage error) for a missing path or a directory without images."""
    out: list[DemoInput] = []
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ValueError(f"not found: {', '.join(missing)}")
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file()
            )
            if not found:
                raise ValueError(
                    f"no images in directory {path} (looked for {', '.join(sorted(SUFFIXES))})"
                )
            out.extend(DemoInput(str(p.relative_to(path.parent)), p) for p in found)
        else:
            out.append(DemoInput(path.name, path))
    return out


def private_dir(path: Path) -> Path:
    """``path`` and missing parents created 0700 (explicitly, whatever the umask)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)
    return path
