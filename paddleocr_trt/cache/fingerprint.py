"""What a model *is*, by content: the same files at two paths share one cache entry.

Keying on the path would serve a stale engine after a model dir is updated in place and build
twice for a copy; keying on content avoids both. Hashes come from :class:`FileHashIndex`, so a
warm start stats three files instead of reading the weights again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..model_types import ModelFiles, locate_model_files
from .hashindex import FileHashIndex

FINGERPRINT_VERSION = 1


@dataclass(frozen=True)
class ModelFingerprint:
    #: sha256 hex over (file name, file sha256) of program, params and inference.yml (an ONNX
    #: model dir: inference.onnx and inference.yml, so the source graph's content is covered)
    digest: str
    #: ``{file name: sha256}``
    files: dict[str, str]
    #: bytes actually read for this answer (0 on a fully warm index)
    bytes_hashed: int


def fingerprint_model_dir(
    model_dir: str | Path | ModelFiles, index: FileHashIndex | None = None
) -> ModelFingerprint:
    """Content fingerprint of a model dir (or its located files: nothing is looked up again);
    raises ModelDirError if it is not one."""
    located = model_dir if isinstance(model_dir, ModelFiles) else locate_model_files(model_dir)
    files = located.files
    index = index or FileHashIndex(None)
    hashes: dict[str, str] = {}
    read = 0
    for path in files:
        result = index.sha256(path)
        hashes[path.name] = result.sha256
        read += result.bytes_hashed
    index.save()
    combined = hashlib.sha256(f"paddleocr_trt-fingerprint-v{FINGERPRINT_VERSION}\n".encode())
    for name in sorted(hashes):
        combined.update(f"{name}\0{hashes[name]}\n".encode())
    return ModelFingerprint(combined.hexdigest(), hashes, read)
