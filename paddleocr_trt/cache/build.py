"""Making a new entry: run the creator in a private temp dir, validate, seal, publish by rename.

Nothing becomes visible before it is complete, fsynced, private (0700/0600) and described by
its manifest; a failure leaves nothing but what ``clean_temp`` can prove is a dead build.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from .._version import __version__
from ..errors import CacheError, ValidationFailedError
from ..log import get_logger
from .fsutil import (
    FULL_ERRNOS,
    NOT_WRITABLE_ERRNOS,
    cache_error,
    fsync_dir,
    fsync_file,
    owner_record,
    remove_tree,
    sha256_file,
    write_json_atomic,
)
from .housekeeping import OWNER_NAME, build_dir_name
from .key import CacheKey
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, CacheEntry
from .safety import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, remove_own_tree

log = get_logger("cache")

#: ``create_fn(tmp_dir)`` returns the artifact path inside ``tmp_dir``, optionally with metadata
CreateFn = Callable[[Path], "Path | str | tuple[Path | str, Mapping[str, Any]]"]
ValidateFn = Callable[[Path], Any]


class EntryStore(Protocol):
    """What :func:`build_entry` needs of the cache (``store.EngineCache``, which calls it)."""

    root: Path

    @property
    def tmp_dir(self) -> Path: ...

    def entry_dir(self, key: CacheKey) -> Path: ...

    def _discard_entry(self, entry_dir: Path) -> bool: ...


class CachePublishError(CacheError):
    """The artifact was created (and validated) but could not be stored in the cache.

    ``artifact_path`` (when not None) is the complete artifact in a temp dir inside the cache
    that this process may still use for this run; call :meth:`discard` when done with it (a
    later start also removes it once this process has exited).
    """

    def __init__(
        self,
        message: str,
        *,
        artifact_path: Path | None,
        build_dir: Path,
        metadata: Mapping[str, Any] | None = None,
        validation: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.artifact_path = artifact_path
        self.build_dir = build_dir
        self.metadata = dict(metadata or {})
        self.validation = None if validation is None else dict(validation)

    def discard(self) -> None:
        remove_own_tree(self.build_dir)


def _is_cache_storage_error(exc: BaseException, root: Path) -> bool:
    """Full disk / read-only anywhere, or a permission error on a path inside the cache."""
    if not isinstance(exc, OSError):
        return False
    if exc.errno in FULL_ERRNOS or exc.errno == errno.EROFS:
        return True
    if exc.errno in NOT_WRITABLE_ERRNOS and exc.filename:
        with contextlib.suppress(ValueError, OSError):
            Path(os.path.abspath(exc.filename)).relative_to(os.path.abspath(root))
            return True
    return False


def _report_dict(value: Any, key: CacheKey) -> dict[str, Any] | None:
    """Normalise what validate_fn returned; raise when it says the artifact failed."""
    passed = getattr(value, "passed", None)
    data = value.to_dict() if hasattr(value, "to_dict") else value
    if isinstance(data, Mapping):
        data = json.loads(json.dumps(dict(data), default=str))
        if passed is None:
            passed = data.get("passed")
    elif data is not None and not isinstance(data, bool):
        data = {"result": str(data)}
    if value is False or passed is False:
        raise ValidationFailedError(
            f"validation of the new artifact ({key.describe()}) failed; nothing was cached",
            report=value,
        )
    return data if isinstance(data, dict) else None


def build_entry(
    cache: EntryStore,
    key: CacheKey,
    create_fn: CreateFn,
    artifact_name: str,
    validate_fn: ValidateFn | None,
    keep_extra_files: bool,
) -> CacheEntry:
    """Create, validate, seal and publish one entry; the caller holds the key's lock."""
    build_dir = cache.tmp_dir / build_dir_name(key.kind, key.digest)
    work = build_dir / "entry"
    try:
        os.mkdir(build_dir, PRIVATE_DIR_MODE)
        write_json_atomic(build_dir / OWNER_NAME, owner_record(), durable=False)
        os.mkdir(work, PRIVATE_DIR_MODE)
    except OSError as exc:
        remove_own_tree(build_dir)
        raise cache_error(cache.root, exc, "creating a temporary build directory") from exc

    started = time.time()
    t0 = time.perf_counter()
    try:
        artifact, metadata = _run_create(create_fn, work, artifact_name)
        if not keep_extra_files:
            for extra in list(work.iterdir()):
                if extra != artifact:
                    remove_tree(extra)
        _seal(work)
        build_seconds = time.perf_counter() - t0
        validation = None
        if validate_fn is not None:
            validation = _report_dict(validate_fn(artifact), key)
    except BaseException as exc:
        remove_own_tree(build_dir)
        if _is_cache_storage_error(exc, cache.root):
            assert isinstance(exc, OSError)
            raise cache_error(cache.root, exc, f"creating {key.describe()}") from exc
        full = _full_disk_error(cache.root, exc)
        if full is not None:
            raise cache_error(cache.root, full, f"creating {key.describe()}") from exc
        raise
    log.info("created %s in %.1f s", key.describe(), build_seconds)

    dest = cache.entry_dir(key)
    try:
        files = {}
        for path in sorted(p for p in work.rglob("*") if p.is_file()):
            fsync_file(path)
            rel = path.relative_to(work).as_posix()
            files[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
        for sub in sorted((p for p in work.rglob("*") if p.is_dir()), reverse=True):
            fsync_dir(sub)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "package_version": __version__,
            "digest": key.digest,
            "kind": key.kind,
            "key": key.to_dict(),
            "artifact": artifact_name,
            "files": files,
            "created": started,
            "build_seconds": build_seconds,
            "validation": validation,
            "metadata": json.loads(json.dumps(dict(metadata), default=str)),
            "last_used": time.time(),
            "created_by": owner_record(),
        }
        write_json_atomic(work / MANIFEST_NAME, manifest)
        if os.path.lexists(dest):  # a bad leftover that could not be removed earlier
            cache._discard_entry(dest)
        os.rename(work, dest)
    except OSError as exc:
        message = str(cache_error(cache.root, exc, f"storing {key.describe()}"))
        kept = work / artifact_name
        if kept.is_file():
            message += f"; the new artifact is still usable at {kept} for this run"
        raise CachePublishError(
            message,
            artifact_path=kept if kept.is_file() else None,
            build_dir=build_dir,
            metadata=metadata,
            validation=validation,
        ) from exc
    try:
        fsync_dir(dest.parent)
    except OSError as exc:
        log.warning("could not fsync %s: %s", dest.parent, exc)
    remove_own_tree(build_dir)
    return CacheEntry(key.digest, key.kind, dest, manifest)


def _run_create(
    create_fn: CreateFn, work: Path, artifact_name: str
) -> tuple[Path, Mapping[str, Any]]:
    result = create_fn(work)
    metadata: Mapping[str, Any] = {}
    if isinstance(result, tuple):
        result, metadata = result
        metadata = metadata or {}
    artifact = Path(result)
    if not artifact.is_absolute():
        artifact = work / artifact
    try:
        artifact.resolve().relative_to(work.resolve())
    except ValueError:
        raise ValueError(
            f"create_fn must write its artifact inside {work}, returned {artifact}"
        ) from None
    if not artifact.is_file():
        raise ValueError(f"create_fn returned {artifact}, which is not a file")
    final = work / artifact_name
    if artifact.resolve() != final.resolve():
        os.replace(artifact, final)
    return final, metadata


def _seal(work: Path) -> None:
    """Make a fresh build private (dirs 0700, files 0600, whatever the umask); refuse links."""
    for dirpath, dirnames, filenames in os.walk(work):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise ValueError(f"create_fn left {path}, which is not a regular file or dir")
            os.chmod(path, PRIVATE_DIR_MODE if stat.S_ISDIR(mode) else PRIVATE_FILE_MODE)
    os.chmod(work, PRIVATE_DIR_MODE)


#: below this many free bytes, a failed build is reported as "cache full", not as its own error
FULL_DISK_FREE_BYTES = 1 << 20


def _full_disk_error(root: Path, exc: BaseException) -> OSError | None:
    """A build that failed in a child (paddle2onnx, TensorRT) cannot pass on ENOSPC itself: if the
    failure names it, or the cache's file system is (nearly) full, say so instead."""
    if not isinstance(exc, Exception):
        return None
    text = str(exc)
    named = "No space left on device" in text or "Disk quota exceeded" in text
    try:
        vfs = os.statvfs(root)
        nearly_full = vfs.f_bavail * vfs.f_frsize < FULL_DISK_FREE_BYTES
    except OSError:
        nearly_full = False
    if not (named or nearly_full):
        return None
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(root))
