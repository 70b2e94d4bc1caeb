"""The entry manifest: its schema, and the check that decides whether an entry may be served.

A manifest is data from disk in a possibly shared directory, and the entry it describes may be an
engine that TensorRT will execute, so nothing in it is trusted by default: every field has the
type the code expects (a mismatch is corruption, never a crash), every file name stays inside
its entry, and every directory and file on the way is a real one (no symlink), owned by the
current user and not writable by anyone else.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import CacheError
from .hashindex import FileHashIndex
from .key import CacheKey
from .safedir import SafeDir
from .safety import UntrustedPathError

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


class ArtifactChangedError(CacheError):
    """An entry's artifact is not, when read for loading, what the cache checked."""


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
        """Bytes of the entry's regular files, counted through descriptors (0 if unreadable)."""
        try:
            with self._open() as entry:
                return entry.tree_size()
        except (OSError, UntrustedPathError):
            return 0

    def _open(self) -> SafeDir:
        """The entry dir, walked from the cache root (``path`` is ``<root>/<kind>/<digest>``)
        one component at a time through descriptors, no link followed (see safedir.py)."""
        with SafeDir.open_path(self.path.parent.parent) as root:
            return root.walk(self.kind, self.path.name)

    def read_artifact(self) -> bytes:
        """The artifact's bytes, read once through the cache's descriptors and checked against
        the size and sha256 its manifest records, for an engine to load from memory.

        Why: the entry was checked when it was looked up, but an engine handed the *path* would
        open it again later, so a file swapped in between (a link, other bytes) would be loaded
        unchecked. Here the bytes checked are the bytes loaded. Anything off raises
        :class:`ArtifactChangedError` (a CacheError: the drop-in drops the entry and rebuilds).
        """
        name = self.manifest.get("artifact")
        info = _dict(_dict(self.manifest.get("files")).get(name))
        if not is_plain_name(name) or not isinstance(info.get("sha256"), str):
            raise ArtifactChangedError(f"cache entry {self.path} names no artifact it recorded")
        try:
            with self._open() as entry:
                fd = entry.open_file(name)
            with os.fdopen(fd, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise ArtifactChangedError(
                f"cache entry {self.path}: its artifact {name} cannot be read ({exc})"
            ) from exc
        except UntrustedPathError as exc:
            raise ArtifactChangedError(f"not loading {self.path / name}: {exc}") from exc
        if len(data) != info.get("size") or hashlib.sha256(data).hexdigest() != info["sha256"]:
            raise ArtifactChangedError(
                f"{self.path / name} changed after the cache checked it (its size or sha256 is "
                "not the manifest's); not loading it"
            )
        return data

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
    for name in ("package_version",):
        if name in manifest and not isinstance(manifest[name], str):
            return f"manifest field {name!r} is not a string: {_short(manifest[name])}"
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
    for name, upper in (("created", MAX_TIME), ("last_used", MAX_TIME), ("build_seconds", 1e7)):
        value = manifest.get(name)
        if value is not None and not _in_range(value, upper):
            return f"manifest field {name!r} is not a plausible number: {_short(value)}"
    for name in ("validation", "metadata", "created_by"):
        value = manifest.get(name)
        if value is not None and not isinstance(value, dict):
            return f"manifest field {name!r} is not an object: {_short(value)}"
    return validation_problem(manifest.get("validation")) or metadata_problem(
        manifest.get("metadata")
    )


def metadata_problem(metadata: Any) -> str | None:
    """What is wrong with the metadata fields other modules read back (names, precision)."""
    if not isinstance(metadata, dict):
        return None
    for name in ("input_names", "output_names", "repairs"):
        value = metadata.get(name)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            return f"manifest metadata.{name} is not a list of strings: {_short(value)}"
    for name in ("precision", "model_dir", "onnx_entry"):
        value = metadata.get(name)
        if value is not None and not isinstance(value, str):
            return f"manifest metadata.{name} is not a string: {_short(value)}"
    value = metadata.get("conversion_seconds")
    if value is not None and not _in_range(value, 1e7):
        return f"manifest metadata.conversion_seconds is not a number: {_short(value)}"
    return None


#: timestamps past this (year 5138) are corruption, not dates (``time.localtime`` overflows)
MAX_TIME = 1e11
#: fields of a validation report the code reads, and the type each must have
_VALIDATION_NUMBERS = ("agreement", "min_agreement", "num_inputs")
_VALIDATION_STRINGS = ("metric", "candidate", "reference")


def _in_range(value: Any, upper: float) -> bool:
    number = _number(value)
    return number is not None and 0.0 <= number <= upper


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validation_problem(validation: Any) -> str | None:
    """What is wrong with a stored validation report (fields the code formats or compares)."""
    if validation is None:
        return None
    if not isinstance(validation, dict):
        return f"manifest validation is not an object: {_short(validation)}"
    for name in _VALIDATION_NUMBERS:  # present means a number: callers format or float() it
        if name in validation and not _in_range(validation[name], 1e9):
            return f"manifest validation.{name} is not a number: {_short(validation[name])}"
    for name in _VALIDATION_STRINGS:
        value = validation.get(name)
        if value is not None and not isinstance(value, str):
            return f"manifest validation.{name} is not a string: {_short(value)}"
    passed = validation.get("passed")
    if passed is not None and not isinstance(passed, bool):
        return f"manifest validation.passed is not true/false: {_short(passed)}"
    stats = validation.get("tensor_stats")
    if stats is not None and not (
        isinstance(stats, list) and all(isinstance(s, dict) for s in stats)
    ):
        return "manifest validation.tensor_stats is not a list of objects"
    return None


def _member(entry: SafeDir, name: str) -> tuple[str | None, os.stat_result | None]:
    """Walk ``name`` inside the entry through descriptors (no link followed); (problem, stat)."""
    parts = name.split("/")
    try:
        with entry.walk(*parts[:-1]) as parent:
            fd = parent.open_file(parts[-1])
            st = os.fstat(fd)
            os.close(fd)
    except FileNotFoundError:
        return f"file {name} is missing", None
    except UntrustedPathError as exc:
        return f"file {name}: {exc}", None
    except OSError as exc:
        return f"file {name} is unreadable ({exc.strerror})", None
    return None, st


def key_proof(manifest: Any, digest: str, kind: str) -> str | None:
    """None if ``manifest`` proves its entry is the cache's own: our schema, and a key that
    hashes to the entry's directory name; else why not. Other fields may still be corrupt."""
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
        return f"its {MANIFEST_NAME} is not a manifest of this cache's schema"
    if manifest.get("kind") != kind:
        return f"its {MANIFEST_NAME} is of another kind"
    try:
        if CacheKey.from_dict(manifest["key"]).digest != digest:
            return f"its {MANIFEST_NAME} key does not hash to the directory's name"
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"its {MANIFEST_NAME} key is invalid ({type(exc).__name__})"
    return None


def check_entry(
    kind_dir: SafeDir, digest: str, key: CacheKey | None, index: FileHashIndex, *, hashes: str
) -> CacheEntry:
    """Inspect one entry dir; ``hashes``: "full" re-reads, "indexed" trusts stat, "none"."""
    kind = kind_dir.path.name
    entry_dir = kind_dir.path / digest

    def bad(problem: str, manifest: Any = None, *, untrusted: bool = False) -> CacheEntry:
        data = manifest if isinstance(manifest, dict) else {}
        return CacheEntry(digest, kind, entry_dir, data, problem, untrusted)

    try:
        entry = kind_dir.child(digest)
    except UntrustedPathError as exc:
        return bad(str(exc), untrusted=True)
    except OSError as exc:
        return bad(f"{entry_dir} is unreadable ({exc.strerror})")
    with entry:
        try:
            manifest = entry.read_json(MANIFEST_NAME)
        except FileNotFoundError:
            return bad(f"{MANIFEST_NAME} is missing")
        except UntrustedPathError as exc:
            return bad(str(exc), untrusted=True)
        except OSError as exc:
            return bad(f"{MANIFEST_NAME} is unreadable ({exc.strerror})")
        except ValueError as exc:
            return bad(f"{MANIFEST_NAME} is not valid JSON ({exc})")
        problem = schema_problem(manifest, digest, kind)
        if problem is not None:
            return bad(problem, manifest)
        stored = manifest["key"]
        if key is not None:
            wanted = key.to_dict()
            if stored != wanted:
                fields = sorted(
                    k for k in set(wanted) | set(stored) if stored.get(k) != wanted.get(k)
                )
                return bad(f"manifest key differs from the requested key in {fields}", manifest)
        else:
            proof = key_proof(manifest, digest, kind)
            if proof is not None:
                return bad(proof.replace("its ", "", 1), manifest)
        for name, info in manifest["files"].items():
            problem, st = _member(entry, name)
            if problem is not None:
                return bad(problem, manifest, untrusted="missing" not in problem)
            assert st is not None
            if st.st_size != info["size"]:
                expected = info["size"]
                return bad(
                    f"file {name} has {st.st_size} bytes, manifest says {expected}", manifest
                )
            if hashes != "none":
                parts = name.split("/")
                try:
                    with entry.walk(*parts[:-1]) as parent:
                        sha = index.sha256_in(parent, parts[-1], trust_index=hashes == "indexed")
                except (OSError, UntrustedPathError) as exc:
                    return bad(f"file {name} is unreadable ({exc})", manifest)
                if sha != info["sha256"]:
                    index.forget(entry_dir / name)
                    return bad(f"file {name} content does not match its sha256", manifest)
    return CacheEntry(digest, kind, entry_dir, manifest)
