"""The entry manifest: its schema, and the check that decides whether an entry may be served.

A manifest is data from disk in a possibly shared directory, and the entry it describes may be an
engine that TensorRT will execute, so nothing in it is trusted by default: every field has the
type the code expects (a mismatch is corruption, never a crash), every file name stays inside
its entry, and every directory and file on the way is a real one (no symlink), owned by the
current user and not writable by anyone else.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from .fsutil import tree_size
from .hashindex import FileHashIndex
from .key import CacheKey
from .safety import UntrustedPathError, read_trusted_bytes, untrusted_reason

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _number(value: Any) -> float | None:
    """A finite int/float (never bool) as float, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class CacheEntry:
    """One entry as found on disk; ``problem`` is None for a usable entry.

    ``untrusted`` marks a problem of ownership (symlink, another user's, writable by others):
    such an entry is never served and never deleted, only moved aside when rebuilt.
    """

    digest: str
    kind: str
    path: Path
    manifest: dict[str, Any] = field(repr=False)
    problem: str | None = None
    untrusted: bool = False

    @property
    def artifact_path(self) -> Path:
        artifact = self.manifest.get("artifact")
        return self.path / (artifact if is_plain_name(artifact) else "")

    @property
    def key(self) -> CacheKey | None:
        try:
            return CacheKey.from_dict(self.manifest["key"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    @property
    def key_fields(self) -> dict[str, Any]:
        """The manifest's key as a dict ({} when it is not one)."""
        return _dict(self.manifest.get("key"))

    @property
    def created(self) -> float | None:
        return _number(self.manifest.get("created"))

    @property
    def last_used(self) -> float | None:
        last = _number(self.manifest.get("last_used"))
        return self.created if last is None else last

    @property
    def build_seconds(self) -> float | None:
        return _number(self.manifest.get("build_seconds"))

    @property
    def validation(self) -> dict[str, Any] | None:
        value = self.manifest.get("validation")
        return value if isinstance(value, dict) else None

    @property
    def metadata(self) -> dict[str, Any]:
        return _dict(self.manifest.get("metadata"))

    @property
    def size_bytes(self) -> int:
        return tree_size(self.path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "kind": self.kind,
            "path": str(self.path),
            "artifact_path": str(self.artifact_path),
            "size_bytes": self.size_bytes,
            "ok": self.problem is None,
            "problem": self.problem,
            "manifest": self.manifest,
        }


def is_plain_name(name: Any) -> bool:
    """A single file name: no separator, not empty, ``.`` or ``..``."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and ("\0" not in name)
    )


def is_member_name(name: Any) -> bool:
    """A relative path inside an entry: plain names joined by ``/``, nothing that climbs out."""
    return isinstance(name, str) and all(is_plain_name(part) for part in name.split("/"))


def schema_problem(manifest: Any, digest: str, kind: str) -> str | None:
    """What is wrong with a manifest's shape (types, names); None when it is well-formed."""
    if not isinstance(manifest, dict):
        return f"{MANIFEST_NAME} is not a JSON object"
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        return (
            f"manifest schema version {version!r} is not the one this paddleocr_trt "
            f"{__version__} reads ({SCHEMA_VERSION})"
        )
    if manifest.get("digest") != digest or manifest.get("kind") != kind:
        return "manifest digest/kind do not match the entry's location"
    if not isinstance(manifest.get("key"), dict):
        return "manifest key is not an object"
    files = manifest.get("files")
    artifact = manifest.get("artifact")
    if not isinstance(files, dict) or not is_plain_name(artifact) or artifact not in files:
        return "manifest lists no artifact file (or names it outside the entry)"
    for name, info in files.items():
        if not is_member_name(name) or name == MANIFEST_NAME:
            return f"manifest names a file outside its entry: {name!r}"
        if not isinstance(info, dict):
            return f"manifest record of {name!r} is not an object"
        size = info.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return f"manifest size of {name!r} is not a byte count: {size!r}"
        if not isinstance(info.get("sha256"), str) or not _SHA256.match(info["sha256"]):
            return f"manifest sha256 of {name!r} is not a sha256: {info.get('sha256')!r}"
    for name in ("created", "last_used", "build_seconds"):
        value = manifest.get(name)
        if value is not None and _number(value) is None:
            return f"manifest field {name!r} is not a number: {value!r}"
    for name in ("validation", "metadata", "created_by"):
        value = manifest.get(name)
        if value is not None and not isinstance(value, dict):
            return f"manifest field {name!r} is not an object: {value!r}"
    return None


def _member_untrusted(entry_dir: Path, name: str) -> tuple[str | None, os.stat_result | None]:
    """Walk ``name`` inside ``entry_dir`` without following links; (problem, file stat)."""
    path = entry_dir
    parts = name.split("/")
    for index, part in enumerate(parts):
        path = path / part
        try:
            st = os.lstat(path)
        except OSError:
            return f"file {name} is missing", None
        last = index == len(parts) - 1
        if not last and not stat.S_ISDIR(st.st_mode):
            return f"file {name}: {path} is not a directory", None
        reason = untrusted_reason(st, want_dir=not last)
        if reason is not None:
            return f"file {name}: {path} {reason}", None
    return None, st


def check_entry(
    entry_dir: Path, key: CacheKey | None, index: FileHashIndex, *, hashes: str
) -> CacheEntry:
    """Inspect one entry dir; ``hashes``: "full" re-reads, "indexed" trusts stat, "none"."""
    kind, digest = entry_dir.parent.name, entry_dir.name

    def bad(problem: str, manifest: Any = None, *, untrusted: bool = False) -> CacheEntry:
        data = manifest if isinstance(manifest, dict) else {}
        return CacheEntry(digest, kind, entry_dir, data, problem, untrusted)

    for path in (entry_dir.parent, entry_dir):
        try:
            reason = untrusted_reason(os.lstat(path), want_dir=True)
        except OSError as exc:
            return bad(f"{path} is unreadable ({exc})")
        if reason is not None:
            return bad(f"{path} {reason}", untrusted=True)
    try:
        manifest = json.loads(read_trusted_bytes(entry_dir / MANIFEST_NAME).decode("utf-8"))
    except FileNotFoundError:
        return bad(f"{MANIFEST_NAME} is missing")
    except UntrustedPathError as exc:
        return bad(str(exc), untrusted=True)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the manifest is a symlink
            return bad(f"{MANIFEST_NAME} is a symbolic link", untrusted=True)
        return bad(f"{MANIFEST_NAME} is unreadable ({exc})")
    except ValueError as exc:
        return bad(f"{MANIFEST_NAME} is not valid JSON ({exc})")
    problem = schema_problem(manifest, digest, kind)
    if problem is not None:
        return bad(problem, manifest)
    stored = manifest["key"]
    if key is not None:
        wanted = key.to_dict()
        if stored != wanted:
            fields = sorted(k for k in set(wanted) | set(stored) if stored.get(k) != wanted.get(k))
            return bad(f"manifest key differs from the requested key in {fields}", manifest)
    else:
        try:
            if CacheKey.from_dict(stored).digest != digest:
                return bad("manifest key does not hash to this entry's name", manifest)
        except (TypeError, ValueError, AttributeError) as exc:
            return bad(f"manifest key is invalid ({exc})", manifest)
    for name, info in manifest["files"].items():
        problem, st = _member_untrusted(entry_dir, name)
        if problem is not None:
            return bad(problem, manifest, untrusted="missing" not in problem)
        assert st is not None
        if st.st_size != info["size"]:
            expected = info["size"]
            return bad(f"file {name} has {st.st_size} bytes, manifest says {expected}", manifest)
        if hashes != "none":
            path = entry_dir / name
            try:
                sha = index.sha256(path, trust_index=hashes == "indexed").sha256
            except OSError as exc:
                return bad(f"file {name} is unreadable ({exc})", manifest)
            if sha != info["sha256"]:
                index.forget(path)
                return bad(f"file {name} content does not match its sha256", manifest)
    return CacheEntry(digest, kind, entry_dir, manifest)
