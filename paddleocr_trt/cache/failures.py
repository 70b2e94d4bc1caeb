"""Remembered failures: a key whose ONNX conversion or engine build failed is not retried.

Without this, every process start redid minutes of conversion/build work only to fall back
again. A failure is stored under the artifact's own cache key, so anything that could change
the outcome (model files, TensorRT version, GPU, precision, builder settings) makes a new key
and a fresh try; ``paddleocr-trt cache clear`` (the digest, or ``--all``) forgets it.

Layout: ``<root>/failures/<kind>-<digest>.json``, written atomically (temp file + rename).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..log import get_logger
from .fsutil import write_json_atomic
from .key import CacheKey

log = get_logger("cache.failures")

FAILURES_DIR = "failures"
MEMO_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FailureRecord:
    """One remembered failure."""

    digest: str
    kind: str
    key: dict[str, Any]
    reason: str
    error_type: str
    created: float
    attempts: list[dict[str, Any]] = field(default_factory=list)
    package_version: str = ""
    path: Path | None = None
    #: conditions of the failed run that are not in the key (e.g. the build timeout)
    context: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))
        return f"{self.error_type} at {when}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "kind": self.kind,
            "key": self.key,
            "reason": self.reason,
            "error_type": self.error_type,
            "created": self.created,
            "attempts": self.attempts,
            "package_version": self.package_version,
            "path": str(self.path) if self.path else None,
            "context": self.context,
        }


class FailureMemo:
    """The failures remembered in one cache root."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.dir = self.root / FAILURES_DIR

    def _path(self, kind: str, digest: str) -> Path:
        return self.dir / f"{kind}-{digest}.json"

    def record(
        self,
        key: CacheKey,
        error: BaseException,
        *,
        attempts: list[dict[str, Any]] | None = None,
        context: dict[str, Any] | None = None,
    ) -> FailureRecord | None:
        """Remember that ``key`` failed with ``error``; a write failure is logged, not raised."""
        data = {
            "schema_version": MEMO_SCHEMA_VERSION,
            "package_version": __version__,
            "digest": key.digest,
            "kind": key.kind,
            "key": key.to_dict(),
            "reason": str(error)[:4000],
            "error_type": type(error).__name__,
            "created": time.time(),
            "attempts": json.loads(json.dumps(attempts or [], default=str)),
            "context": json.loads(json.dumps(context or {}, default=str)),
        }
        path = self._path(key.kind, key.digest)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, data)
        except OSError as exc:
            log.warning("could not remember the failure of %s in %s: %s", key.describe(), path, exc)
            return None
        log.warning(
            "remembered this failure in %s: %s is not retried until its inputs change or you "
            "run `paddleocr-trt cache clear %s`",
            path,
            key.describe(),
            key.digest[:12],
        )
        return _record(data, path)

    def get(self, key: CacheKey) -> FailureRecord | None:
        """The failure remembered for exactly this key, or None."""
        path = self._path(key.kind, key.digest)
        data = _read(path)
        if data is None or data.get("key") != key.to_dict():
            return None
        return _record(data, path)

    def list(self) -> list[FailureRecord]:
        found = []
        with contextlib.suppress(OSError):
            for path in sorted(self.dir.glob("*.json")):
                data = _read(path)
                if data is not None:
                    found.append(_record(data, path))
        return sorted(found, key=lambda r: (r.created, r.digest))

    def remove(self, digest_prefix: str) -> list[FailureRecord]:
        """Forget the failures whose digest starts with ``digest_prefix``; return them."""
        prefix = digest_prefix.strip().lower()
        if not prefix:
            return []
        gone = []
        for record in self.list():
            if record.digest.startswith(prefix) and record.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(record.path)
                    gone.append(record)
        return gone

    def clear(self) -> int:
        count = 0
        for record in self.list():
            if record.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(record.path)
                    count += 1
        return count


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema_version") != MEMO_SCHEMA_VERSION:
        return None
    return data


def _record(data: dict[str, Any], path: Path) -> FailureRecord:
    return FailureRecord(
        digest=str(data.get("digest", "")),
        kind=str(data.get("kind", "")),
        key=dict(data.get("key") or {}),
        reason=str(data.get("reason", "")),
        error_type=str(data.get("error_type", "")),
        created=float(data.get("created") or 0.0),
        attempts=list(data.get("attempts") or []),
        package_version=str(data.get("package_version", "")),
        path=path,
        context=dict(data.get("context") or {}),
    )
