"""Engine bundles: move validated cache entries between machines as one archive.

A fleet should build each engine once per GPU model and TensorRT version, not once per worker.
``export_bundle`` writes every usable entry (files re-hashed first) with its manifest into one
tar archive; ``import_bundle`` puts them into another cache under the same key, so the drop-in
finds them exactly as if they had been built there.

Trust: an archive is data from elsewhere, so an imported entry is never trusted more than a
locally built one. The archive is read member by member without extracting anything by path:
a link, device, absolute or climbing name, or a file outside an entry rejects the whole archive
before anything is written. Each entry's manifest must pass the cache's own schema check, its key
must hash to its digest, its validation must not have failed, and every file must match the
size and sha256 its manifest records (hashed while copied). Accepted files are written through
``EngineCache.get_or_create`` (private temp dir, exclusive files, fsync, atomic rename under the
key's lock), which re-hashes them and writes a fresh manifest; where an entry is already there,
the local one wins. Entries keyed to another TensorRT version or GPU are imported but never
match here: such a worker builds its own (the drop-in logs it).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import CacheError
from ..log import get_logger
from .hashindex import FileHashIndex
from .key import KINDS, CacheKey
from .manifest import MANIFEST_NAME, check_entry, is_member_name, is_plain_name, schema_problem
from .safedir import SafeDir
from .safety import create_exclusive

log = get_logger("cache")

BUNDLE_FORMAT = 1
BUNDLE_MANIFEST = "paddleocr-trt-bundle.json"
ENTRIES_DIR = "entries"
_CHUNK = 1 << 20


class BundleError(CacheError):
    """The archive is not a bundle this package may import (links, foreign paths, bad JSON)."""


@dataclass
class BundleReport:
    """What an export or import did, entry by entry (digests)."""

    path: str
    exported: list[str] = field(default_factory=list)
    imported: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # already in the cache: the local one kept
    rejected: dict[str, str] = field(default_factory=dict)  # digest -> why
    skipped: dict[str, str] = field(default_factory=dict)  # export: broken entries left out
    targets: list[dict[str, Any]] = field(default_factory=list)  # engine keys' TRT version/GPU

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _target(key: dict[str, Any]) -> dict[str, Any] | None:
    if key.get("kind") != "engine":
        return None
    return {f: key.get(f) for f in ("tensorrt_version", "gpu_name", "compute_capability")}


# -- export --------------------------------------------------------------------------------------


def export_bundle(cache: Any, out: str | Path, digests: list[str] | None = None) -> BundleReport:
    """Write the cache's usable entries (or those whose digest starts with one of ``digests``)
    into one tar archive at ``out`` (written to a temp file, then renamed into place)."""
    out = Path(os.path.abspath(Path(out).expanduser()))
    report = BundleReport(str(out))
    index = FileHashIndex(cache.fsroot)
    chosen = []
    for entry in cache.entries():
        if digests and not any(entry.digest.startswith(d.strip().lower()) for d in digests):
            continue
        try:  # re-read every byte, through the cache root's descriptors (see safedir.py)
            with cache.fsroot.open(entry.kind) as kind_dir:
                checked = check_entry(kind_dir, entry.digest, None, index, hashes="full")
        except (OSError, CacheError) as exc:
            report.skipped[entry.digest] = str(exc)
            continue
        if checked.problem is not None:
            report.skipped[entry.digest] = checked.problem
            continue
        if checked.validation is None or checked.validation.get("passed") is not True:
            report.skipped[entry.digest] = "it carries no passed validation report"
            continue
        chosen.append(checked)
    if digests and not chosen:
        raise CacheError(f"no usable cache entry matches {', '.join(digests)} in {cache.root}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_exclusive(out.parent, f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            records = []
            for entry in chosen:
                base = f"{ENTRIES_DIR}/{entry.kind}/{entry.digest}"
                with cache.fsroot.open(entry.kind, entry.digest) as entry_dir:
                    for name, info in sorted(entry.manifest["files"].items()):
                        _add_file(tar, f"{base}/{name}", entry_dir, name, info)
                _add_bytes(tar, f"{base}/{MANIFEST_NAME}", _json_bytes(entry.manifest))
                records.append({"kind": entry.kind, "digest": entry.digest})
                report.exported.append(entry.digest)
                target = _target(entry.key_fields)
                if target and target not in report.targets:
                    report.targets.append(target)
            head = {
                "format": BUNDLE_FORMAT,
                "package_version": __version__,
                "created": time.time(),
                "entries": records,
            }
            _add_bytes(tar, BUNDLE_MANIFEST, _json_bytes(head))
            raw.flush()
            os.fsync(raw.fileno())
        copy_mode(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("exported %d cache entries to %s", len(report.exported), out)
    return report


def copy_mode(path: Path) -> None:
    """A bundle is a user's output file: the mode a new file gets under the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode("utf-8")


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, int(time.time())
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


class _Hashing(io.RawIOBase):
    """A file read through for ``tar.addfile``, hashed on the way (the bytes archived are the
    bytes checked)."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.digest = handle, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


def _add_file(
    tar: tarfile.TarFile, member: str, entry_dir: SafeDir, name: str, info: dict[str, Any]
) -> None:
    """Archive one file of an entry, opened through the entry's descriptor (no link followed
    at any level, ours, nlink 1) and checked against its manifest while it is copied."""
    *parents, leaf = name.split("/")
    folder = entry_dir.walk(*parents)
    with folder:
        fd = folder.open_file(leaf)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        reader = _Hashing(handle)
        tar.addfile(_tarinfo(member, size), reader)
    if size != info["size"] or reader.digest.hexdigest() != info["sha256"]:
        raise CacheError(
            f"{entry_dir.path / name} changed after it was checked (not the size or sha256 its "
            "manifest records); no bundle written"
        )


# -- import --------------------------------------------------------------------------------------


def _structure(tar: tarfile.TarFile) -> tuple[dict[str, Any], dict[tuple[str, str], dict]]:
    """Every member checked before anything is written: {(kind, digest): {name: TarInfo}}."""
    head: dict[str, Any] | None = None
    entries: dict[tuple[str, str], dict[str, tarfile.TarInfo]] = {}
    for member in tar.getmembers():
        name = member.name
        if member.isdir() and is_member_name(name.rstrip("/")):
            continue
        if not member.isfile():
            kind = "link" if member.issym() or member.islnk() else "special file"
            raise BundleError(f"bundle member {name!r} is a {kind}; refusing the whole archive")
        if not is_member_name(name):
            raise BundleError(f"bundle member {name!r} names a path outside the bundle")
        if name == BUNDLE_MANIFEST:
            head = json.loads(tar.extractfile(member).read().decode("utf-8"))  # type: ignore[union-attr]
            continue
        parts = name.split("/")
        if len(parts) < 4 or parts[0] != ENTRIES_DIR or parts[1] not in KINDS:
            raise BundleError(f"bundle member {name!r} is not inside an entry")
        if not is_plain_name(parts[2]):
            raise BundleError(f"bundle member {name!r} has a bad entry name")
        files = entries.setdefault((parts[1], parts[2]), {})
        rel = "/".join(parts[3:])
        if rel in files:
            raise BundleError(f"bundle member {name!r} appears twice")
        files[rel] = member
    if not isinstance(head, dict) or head.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not a paddleocr-trt bundle of format {BUNDLE_FORMAT} (no valid head)")
    return head, entries


def import_bundle(cache: Any, bundle: str | Path) -> BundleReport:
    """Add the bundle's entries to ``cache``; BundleError if the archive itself is unsafe."""
    bundle = Path(bundle).expanduser()
    report = BundleReport(str(bundle))
    try:
        tar = tarfile.open(bundle, mode="r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleError(f"{bundle} is not a readable bundle archive ({first})") from exc
    with tar:
        try:
            head, entries = _structure(tar)
        except (tarfile.TarError, EOFError, ValueError) as exc:
            raise BundleError(f"{bundle} is not a readable bundle archive ({exc})") from exc
        for (kind, digest), files in sorted(entries.items()):
            try:
                outcome = _import_entry(cache, tar, kind, digest, files, head)
            except (tarfile.TarError, EOFError, ValueError, OSError) as exc:
                outcome = f"rejected: {exc}"
            target = _target({"kind": kind, **_entry_key(tar, files)})
            if target and outcome in ("imported", "present") and target not in report.targets:
                report.targets.append(target)
            if outcome == "imported":
                report.imported.append(digest)
            elif outcome == "present":
                report.present.append(digest)
            else:
                why = report.rejected[digest] = outcome.removeprefix("rejected: ")
                log.warning("bundle entry %s/%s rejected: %s", kind, digest, why)
    log.info(
        "bundle %s: %d imported, %d already present, %d rejected",
        bundle,
        len(report.imported),
        len(report.present),
        len(report.rejected),
    )
    return report


def _entry_key(tar: tarfile.TarFile, files: dict) -> dict[str, Any]:
    """The key fields of an entry's manifest (``{}`` if unreadable): for the report only."""
    member = files.get(MANIFEST_NAME)
    try:
        key = json.loads(tar.extractfile(member).read())["key"]  # type: ignore[union-attr]
        return key if isinstance(key, dict) else {}
    except Exception:
        return {}


def _import_entry(
    cache: Any, tar: tarfile.TarFile, kind: str, digest: str, files: dict, head: dict
) -> str:
    """``imported`` / ``present`` / ``rejected: why`` for one entry of the archive."""
    if MANIFEST_NAME not in files:
        return f"rejected: {MANIFEST_NAME} is missing"
    files = dict(files)
    raw = tar.extractfile(files.pop(MANIFEST_NAME))
    manifest = json.loads(raw.read().decode("utf-8"))  # type: ignore[union-attr]
    problem = schema_problem(manifest, digest, kind)
    if problem is not None:
        return f"rejected: {problem}"
    try:
        key = CacheKey.from_dict(manifest["key"])
    except (TypeError, ValueError, AttributeError) as exc:
        return f"rejected: manifest key is invalid ({exc})"
    if key.digest != digest or key.kind != kind:
        return "rejected: manifest key does not hash to this entry's name"
    validation = manifest.get("validation")
    if not isinstance(validation, dict) or validation.get("passed") is not True:
        return "rejected: it carries no passed validation report"
    listed = manifest["files"]
    if set(files) != set(listed):
        extra = sorted(set(files) ^ set(listed))
        return f"rejected: archive files differ from the manifest's list ({extra[:5]})"
    if cache.get(key) is not None:
        return "present"

    ran: list[bool] = []

    def create(tmp: Path) -> tuple[Path, dict[str, Any]]:
        ran.append(True)
        for name in sorted(listed):
            _copy_checked(tar, files[name], tmp / name, listed[name])
        origin = {
            "bundle_created": head.get("created"),
            "bundle_package_version": head.get("package_version"),
            "built_by": manifest.get("created_by"),
            "built": manifest.get("created"),
            "build_seconds": manifest.get("build_seconds"),
        }
        metadata = dict(manifest.get("metadata") or {})
        return tmp / manifest["artifact"], {**metadata, "imported": origin}

    cache.get_or_create(
        key,
        create,
        artifact_name=manifest["artifact"],
        validate_fn=lambda _path: validation,  # the builder's report: a failed one was refused
        keep_extra_files=True,
    )
    return "imported" if ran else "present"  # another importer won the key's lock


def _copy_checked(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, info: dict) -> None:
    """Stream one archive file into the build dir (exclusive create), hashing it; a size or
    sha256 other than the manifest's raises (the whole entry is then dropped)."""
    if member.size != info["size"]:
        raise ValueError(f"{dest.name} has {member.size} bytes, its manifest says {info['size']}")
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    source = tar.extractfile(member)
    if source is None:
        raise ValueError(f"{member.name} cannot be read from the archive")
    digest = hashlib.sha256()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != info["sha256"]:
        raise ValueError(f"{dest.name} does not match the sha256 in its manifest (bad checksum)")


__all__ = ["BundleError", "BundleReport", "export_bundle", "import_bundle"]
