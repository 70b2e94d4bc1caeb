"""Making a new entry: run the creator in a private temp dir, validate, seal, publish by rename.

Nothing becomes visible before it is complete, fsynced, private (0700/0600) and described by
its manifest; a failure leaves nothing but what ``clean_temp`` can prove is a dead build.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
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
from .fsutil import FULL_ERRNOS, NOT_WRITABLE_ERRNOS, cache_error, owner_record
from .housekeeping import OWNER_NAME, build_dir_name
from .key import CacheKey
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, CacheEntry
from .root import CacheRoot
from .safedir import SafeDir
from .safety import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, UntrustedPathError

log = get_logger("cache")

#: ``create_fn(tmp_dir)`` returns the artifact path inside ``tmp_dir``, optionally with metadata
CreateFn = Callable[[Path], "Path | str | tuple[Path | str, Mapping[str, Any]]"]
ValidateFn = Callable[[Path], Any]


class EntryStore(Protocol):
    """What :func:`build_entry` needs of the cache (``store.EngineCache``, which calls it)."""

    root: Path
    fsroot: CacheRoot

    @property
    def tmp_dir(self) -> Path: ...

    def entry_dir(self, key: CacheKey) -> Path: ...

    def _discard_entry(self, kind: str, digest: str) -> bool: ...


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
        cache: EntryStore | None = None,
    ) -> None:
        super().__init__(message)
        self._cache = cache
        self.artifact_path = artifact_path
        self.build_dir = build_dir
        self.metadata = dict(metadata or {})
        self.validation = None if validation is None else dict(validation)

    def discard(self) -> None:
        if self._cache is not None:
            _discard_build(self._cache, self.build_dir.name)


def _is_cache_storage_error(exc: BaseException, root: Path) -> bool:
    """Full disk / read-only anywhere, or a permission error on a path inside the cache."""
    if not isinstance(exc, OSError):
        return False
    if exc.errno in FULL_ERRNOS or exc.errno == errno.EROFS:
        return True
    if exc.errno in NOT_WRITABLE_ERRNOS and exc.filename:
        if str(exc.filename).startswith(f"/proc/{os.getpid()}/fd/"):
            return True  # a path through the build dir's descriptor (SafeDir.fd_path)
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
    """Create, validate, seal and publish one entry; the caller holds the key's lock.

    The build dir (``tmp/<build>/``) and its ``entry/`` stay open as descriptors from creation
    to publication: the creator writes through :meth:`SafeDir.fd_path` (a path that resolves
    through the open ``entry/`` descriptor, not through ``<root>/tmp/...``), sealing and hashing
    read through it, and publication is a ``renameat`` from the held build dir. A component of
    the path swapped for a link meanwhile is never written through nor published from.
    """
    name = build_dir_name(key.kind, key.digest)
    try:
        with cache.fsroot.open("tmp") as tmp:
            build = tmp.child(name, create=True)
        try:
            build.write_json(OWNER_NAME, owner_record(), durable=False)
            work_dir = build.child("entry", create=True)
        except BaseException:
            build.close()
            raise
    except (OSError, UntrustedPathError) as exc:
        _discard_build(cache, name)
        if isinstance(exc, UntrustedPathError):
            raise
        raise cache_error(cache.root, exc, "creating a temporary build directory") from exc
    with build, work_dir:
        return _build_in(
            cache, key, create_fn, artifact_name, validate_fn, keep_extra_files, build, work_dir
        )


def _build_in(
    cache: EntryStore,
    key: CacheKey,
    create_fn: CreateFn,
    artifact_name: str,
    validate_fn: ValidateFn | None,
    keep_extra_files: bool,
    build: SafeDir,
    work_dir: SafeDir,
) -> CacheEntry:
    name = build.path.name
    build_dir = cache.tmp_dir / name
    work = work_dir.fd_path()

    started = time.time()
    t0 = time.perf_counter()
    try:
        artifact, metadata = _run_create(create_fn, work, work_dir, artifact_name)
        if not keep_extra_files:
            for extra in work_dir.names():
                if extra != artifact_name and not work_dir.unlink(extra):
                    work_dir.remove_tree(extra)
        files = _seal(work_dir)
        build_seconds = time.perf_counter() - t0
        validation = None
        if validate_fn is not None:
            validation = _report_dict(validate_fn(artifact), key)
    except BaseException as exc:
        _discard_build(cache, name)
        if _is_cache_storage_error(exc, cache.root):
            assert isinstance(exc, OSError)
            raise cache_error(cache.root, exc, f"creating {key.describe()}") from exc
        full = _full_disk_error(cache.root, exc)
        if full is not None:
            raise cache_error(cache.root, full, f"creating {key.describe()}") from exc
        raise
    log.info("created %s in %.1f s", key.describe(), build_seconds)

    dest = cache.entry_dir(key)
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
    try:
        work_dir.write_json(MANIFEST_NAME, manifest)
        here, held = build.lstat("entry"), work_dir.stat()
        if here is None or (here.st_dev, here.st_ino) != (held.st_dev, held.st_ino):
            raise UntrustedPathError(f"{build_dir / 'entry'} was replaced while it was built")
        with cache.fsroot.open(key.kind) as kind_dir:
            if kind_dir.lstat(key.digest) is not None:  # a bad leftover not removed earlier
                cache._discard_entry(key.kind, key.digest)
            build.rename("entry", kind_dir, key.digest)  # renameat from the held build dir
            try:
                kind_dir.fsync()
            except OSError as exc:
                log.warning("could not fsync %s: %s", kind_dir.path, exc)
    except (OSError, UntrustedPathError) as exc:
        if isinstance(exc, OSError):
            message = str(cache_error(cache.root, exc, f"storing {key.describe()}"))
        else:
            message = f"storing {key.describe()} failed: {exc}"
        kept = build_dir / "entry" / artifact_name
        st = work_dir.lstat(artifact_name)
        usable = st is not None and stat.S_ISREG(st.st_mode)
        if usable:
            message += f"; the new artifact is still usable at {kept} for this run"
        raise CachePublishError(
            message,
            artifact_path=kept if usable else None,
            build_dir=build_dir,
            metadata=metadata,
            validation=validation,
            cache=cache,
        ) from exc
    _discard_build(cache, name)
    return CacheEntry(key.digest, key.kind, dest, manifest)


def _discard_build(cache: EntryStore, name: str) -> None:
    with contextlib.suppress(OSError, UntrustedPathError), cache.fsroot.open("tmp") as tmp:
        tmp.remove_tree(name, last=OWNER_NAME)


def _run_create(
    create_fn: CreateFn, work: Path, work_dir: SafeDir, artifact_name: str
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
        rel = artifact.resolve().relative_to(work.resolve())
    except ValueError:
        raise ValueError(
            f"create_fn must write its artifact inside {work_dir.path}, returned {artifact}"
        ) from None
    st = work_dir.lstat(rel.parts[0]) if len(rel.parts) == 1 else None
    if len(rel.parts) == 1 and (st is None or not stat.S_ISREG(st.st_mode)):
        raise ValueError(f"create_fn returned {artifact}, which is not a file")
    if len(rel.parts) != 1:
        if not artifact.is_file():
            raise ValueError(f"create_fn returned {artifact}, which is not a file")
        os.replace(artifact, work / artifact_name)  # from a subdir of the held dir
    elif rel.parts[0] != artifact_name:
        work_dir.rename(rel.parts[0], work_dir, artifact_name)  # renameat on the held dir
    return work / artifact_name, metadata


def _seal(work: SafeDir) -> dict[str, dict[str, Any]]:
    """Make a fresh build private (dirs 0700, files 0600, whatever the umask), durable, and
    describe its files (size, sha256); refuse links and special files. All through fds."""
    files: dict[str, dict[str, Any]] = {}
    for top, dirs, names, dir_fd in os.fwalk(".", dir_fd=work.fd, follow_symlinks=False):
        for name in [*dirs, *names]:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode) or not (
                stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)
            ):
                raise ValueError(
                    f"create_fn left {work.path / top / name}, which is not a regular file or dir"
                )
        for name in names:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            with os.fdopen(fd, "rb") as handle:
                os.fchmod(fd, PRIVATE_FILE_MODE)
                os.fsync(fd)
                digest = hashlib.sha256()
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                rel = os.path.normpath(os.path.join(top, name))
                files[Path(rel).as_posix()] = {
                    "size": os.fstat(fd).st_size,
                    "sha256": digest.hexdigest(),
                }
        os.fchmod(dir_fd, PRIVATE_DIR_MODE)
        os.fsync(dir_fd)
    return dict(sorted(files.items()))


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
