"""Content-addressed cache of ONNX files and TensorRT engines (see store.py for the layout)."""

from __future__ import annotations

from .fingerprint import ModelFingerprint, fingerprint_model_dir
from .hashindex import FileHashIndex
from .key import CacheKey
from .store import CacheEntry, CachePublishError, EngineCache

__all__ = [
    "CacheEntry",
    "CacheKey",
    "CachePublishError",
    "EngineCache",
    "FileHashIndex",
    "ModelFingerprint",
    "fingerprint_model_dir",
]
