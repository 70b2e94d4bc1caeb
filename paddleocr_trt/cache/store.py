"""The on-disk artifact cache: never serve a stale, foreign, corrupt or half-written artifact.

Layout under the root (``settings.default_cache_dir()`` unless given)::

    <root>/<kind>/<digest>/        one entry: artifact file(s) + manifest.json
    <root>/locks/<digest>.lock     flock per key while an entry is (re)created
    <root>/tmp/<build id>/         entries being built (owner.json + entry/), renamed into place
    <root>/hash-index.json         stat -> sha256 memory (see hashindex.py)

An entry becomes visible only by ``rename(2)`` of a fully written, fsynced directory that already
holds its manifest, so readers see a whole entry or none. Every read re-checks the manifest
against the requested key and the files against their recorded size and sha256; an entry that
fails is logged, removed and rebuilt rather than trusted.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import CacheError, ValidationFailedError
from ..log import get_logger
from ..settings import default_cache_dir
from .fingerprint import ModelFingerprint, fingerprint_model_dir
from .fsutil import (
    FULL_ERRNOS,
    NOT_WRITABLE_ERRNOS,
    cache_error,
    fsync_dir,
    fsync_file,
    owner_alive,
    owner_record,
    remove_tree,
    sha256_file,
    tree_size,
    write_json_atomic,
)
from .hashindex import FileHashIndex
from .key import KINDS, CacheKey
from .lock import file_lock, try_lock_and_delete

log = get_logger("cache")

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
OWNER_NAME = "owner.json"
#: last-used times are rewritten at most this often (a hit should not always cost a write)
LAST_USED_RESOLUTION_S = 3600.0
DEFAULT_LOCK_TIMEOUT_S = 1800.0  # an engine build of a large model can take many minutes
DEFAULT_STALE_TEMP_S = 3600.0  # temp dirs of owners we cannot check (other hosts)
#: a temp dir without a readable owner.json younger than this may be just being created
UNOWNED_GRACE_S = 60.0

#: ``create_fn(tmp_dir)`` returns the artifact path inside ``tmp_dir``, optionally with metadata
CreateFn = Callable[[Path], "Path | str | tuple[Path | str, Mapping[str, Any]]"]
ValidateFn = Callable[[Path], Any]


@dataclass(frozen=True)
class CacheEntry:
    """One entry as found on disk; ``problem`` is None for a usable entry."""

    digest: str
    kind: str
    path: Path
    manifest: dict[str, Any] = field(repr=False)
    problem: str | None = None

    @property
    def artifact_path(self) -> Path:
        return self.path / str(self.manifest.get("artifact", ""))

    @property
    def key(self) -> CacheKey | None:
        try:
            return CacheKey.from_dict(self.manifest["key"])
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def created(self) -> float | None:
        return self.manifest.get("created")

    @property
    def last_used(self) -> float | None:
        return self.manifest.get("last_used", self.created)

    @property
    def build_seconds(self) -> float | None:
        return self.manifest.get("build_seconds")

    @property
    def validation(self) -> dict[str, Any] | None:
        return self.manifest.get("validation")

    @property
    def metadata(self) -> dict[str, Any]:
        return self.manifest.get("metadata") or {}

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
        remove_tree(self.build_dir)


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


class EngineCache:
    """Content-addressed cache of ONNX files and TensorRT engines; safe across processes."""

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        stale_temp_s: float = DEFAULT_STALE_TEMP_S,
    ) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.root = Path(os.path.abspath(self.root))
        self.lock_timeout_s = lock_timeout_s
        self.stale_temp_s = stale_temp_s
        self._index = FileHashIndex(self.root)

    def __repr__(self) -> str:
        return f"EngineCache({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------------------

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def locks_dir(self) -> Path:
        return self.root / "locks"

    def entry_dir(self, key: CacheKey) -> Path:
        return self.root / key.kind / key.digest

    def fingerprint(self, model_dir: str | Path) -> ModelFingerprint:
        """Content fingerprint of a model dir, remembered in this cache's hash index."""
        return fingerprint_model_dir(model_dir, self._index)

    # -- reading -------------------------------------------------------------------------------

    def _check(self, entry_dir: Path, key: CacheKey | None, *, hashes: str) -> CacheEntry:
        """Inspect one entry dir; ``hashes``: "full" re-reads, "indexed" trusts stat, "none"."""
        kind, digest = entry_dir.parent.name, entry_dir.name

        def bad(problem: str, manifest: dict[str, Any] | None = None) -> CacheEntry:
            return CacheEntry(digest, kind, entry_dir, manifest or {}, problem)

        try:
            manifest = json.loads((entry_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return bad(f"{MANIFEST_NAME} is missing")
        except (OSError, ValueError) as exc:
            return bad(f"{MANIFEST_NAME} is unreadable or not valid JSON ({exc})")
        if not isinstance(manifest, dict):
            return bad(f"{MANIFEST_NAME} is not a JSON object")
        version = manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            return bad(
                f"manifest schema version {version!r} is not the one this paddleocr_trt "
                f"{__version__} reads ({SCHEMA_VERSION})",
                manifest,
            )
        stored = manifest.get("key")
        if key is not None:
            wanted = key.to_dict()
            if stored != wanted:
                fields = sorted(
                    k
                    for k in set(wanted) | set(stored or {})
                    if not isinstance(stored, dict) or stored.get(k) != wanted.get(k)
                )
                return bad(f"manifest key differs from the requested key in {fields}", manifest)
        else:
            try:
                if CacheKey.from_dict(stored).digest != digest:
                    return bad("manifest key does not hash to this entry's name", manifest)
            except (TypeError, ValueError) as exc:
                return bad(f"manifest key is invalid ({exc})", manifest)
        if manifest.get("digest") != digest or manifest.get("kind") != kind:
            return bad("manifest digest/kind do not match the entry's location", manifest)
        files = manifest.get("files")
        artifact = manifest.get("artifact")
        if not isinstance(files, dict) or artifact not in files:
            return bad("manifest lists no artifact file", manifest)
        for name, info in files.items():
            path = entry_dir / name
            try:
                size = path.stat().st_size
            except OSError:
                return bad(f"file {name} is missing", manifest)
            if not isinstance(info, dict) or size != info.get("size"):
                expected = info.get("size") if isinstance(info, dict) else None
                return bad(f"file {name} has {size} bytes, manifest says {expected}", manifest)
            if hashes != "none":
                try:
                    sha = self._index.sha256(path, trust_index=hashes == "indexed").sha256
                except OSError as exc:
                    return bad(f"file {name} is unreadable ({exc})", manifest)
                if sha != info.get("sha256"):
                    self._index.forget(path)
                    return bad(f"file {name} content does not match its sha256", manifest)
        return CacheEntry(digest, kind, entry_dir, manifest)

    def get(self, key: CacheKey, *, verify: bool = False) -> CacheEntry | None:
        """The valid entry for ``key``, or None (a bad entry is logged and removed).

        File hashes are always compared; ``verify=True`` re-reads the files even when the hash
        index says they are unchanged since they were last hashed.
        """
        return self._lookup(key, verify=verify, locked=False)

    def _lookup(self, key: CacheKey, *, verify: bool, locked: bool) -> CacheEntry | None:
        entry_dir = self.entry_dir(key)
        if not entry_dir.is_dir():
            return None
        entry = self._check(entry_dir, key, hashes="full" if verify else "indexed")
        self._index.save()
        if entry.problem is None:
            self._touch(entry)
            return entry
        log.warning(
            "cache entry %s (%s) is unusable: %s; removing it so it is rebuilt",
            entry_dir,
            key.describe(),
            entry.problem,
        )
        if locked:
            self._discard_entry(entry_dir)
        else:
            self._invalidate_unlocked(key, entry_dir)
        return None

    def invalidate(self, entry: CacheEntry, reason: str) -> bool:
        """Drop an entry its user found unusable (e.g. TensorRT would not deserialize it).

        Only that very entry is removed: if another process has meanwhile replaced it with a
        new build, the new one stays. Returns whether something was removed.
        """
        try:
            current = json.loads((entry.path / MANIFEST_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            current = None
        if isinstance(current, dict) and (
            current.get("created") != entry.manifest.get("created")
            or current.get("files") != entry.manifest.get("files")
        ):
            return False
        log.warning(
            "cache entry %s is unusable: %s; removing it so it is rebuilt", entry.path, reason
        )
        return self._discard_entry(entry.path)

    def _invalidate_unlocked(self, key: CacheKey, entry_dir: Path) -> None:
        """Remove a bad entry only under its lock and if still bad: a concurrent builder may
        have replaced it with a good one meanwhile. If the lock is busy, its holder will deal."""
        try:
            self.locks_dir.mkdir(parents=True, exist_ok=True)
            with file_lock(self._lock_path(key), 0.0, key.describe()):
                if entry_dir.is_dir():
                    again = self._check(entry_dir, key, hashes="indexed")
                    if again.problem is not None:
                        self._discard_entry(entry_dir)
        except CacheError:
            log.debug("%s is locked by another process; leaving the bad entry to it", entry_dir)
        except OSError as exc:
            log.warning("could not remove bad cache entry %s: %s", entry_dir, exc)

    def _discard_entry(self, entry_dir: Path) -> bool:
        """Move an entry out of sight atomically, then delete it."""
        trash = self.tmp_dir / f"trash-{entry_dir.name}-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            os.rename(entry_dir, trash)
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("could not remove cache entry %s: %s", entry_dir, exc)
            return False
        remove_tree(trash)
        return True

    def _touch(self, entry: CacheEntry) -> None:
        """Best-effort last-used update, written through the entry's directory fd so that a
        concurrently replaced entry is never given this (older) manifest."""
        now = time.time()
        if now - float(entry.manifest.get("last_used") or 0) < LAST_USED_RESOLUTION_S:
            return
        manifest = dict(entry.manifest, last_used=now)
        tmp_name = f".{MANIFEST_NAME}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            dir_fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return
        try:
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(manifest, handle, indent=1, sort_keys=True)
            os.replace(tmp_name, MANIFEST_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            entry.manifest["last_used"] = now
        except OSError as exc:
            log.debug("could not update last-used time of %s: %s", entry.path, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp_name, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)

    # -- creating ------------------------------------------------------------------------------

    def _lock_path(self, key: CacheKey) -> Path:
        return self.locks_dir / f"{key.kind}-{key.digest}.lock"

    @contextlib.contextmanager
    def _key_lock(self, key: CacheKey) -> Iterator[None]:
        try:
            for path in (self.root, self.root / key.kind, self.locks_dir, self.tmp_dir):
                path.mkdir(parents=True, exist_ok=True)
            lock = file_lock(self._lock_path(key), self.lock_timeout_s, key.describe())
            lock.__enter__()
        except OSError as exc:
            raise cache_error(self.root, exc, "taking the entry lock") from exc
        try:
            yield
        finally:
            lock.__exit__(None, None, None)

    def get_or_create(
        self,
        key: CacheKey,
        create_fn: CreateFn,
        *,
        artifact_name: str,
        validate_fn: ValidateFn | None = None,
        verify: bool = False,
        keep_extra_files: bool = False,
    ) -> CacheEntry:
        """The entry for ``key``; if missing, create it exactly once across processes.

        ``create_fn(tmp_dir)`` writes the artifact into ``tmp_dir`` (a fresh dir inside the cache)
        and returns its path, or ``(path, metadata_dict)``; other files it leaves there (failed
        attempts, intermediates) are deleted unless ``keep_extra_files`` (e.g. ONNX external
        data), in which case they are stored and checked like the artifact.
        ``validate_fn(artifact_path)`` returns a report (dict or object with ``to_dict()`` /
        ``passed``); a failed report raises ValidationFailedError. Nothing is published unless
        both succeed. Storage failures raise CacheError (CachePublishError when
        the artifact itself was made and may still be used from its temp location).
        """
        if "/" in artifact_name or artifact_name in ("", ".", "..", MANIFEST_NAME):
            raise ValueError(f"artifact_name must be a plain file name, got {artifact_name!r}")
        entry = self._lookup(key, verify=verify, locked=False)
        if entry is not None:
            return entry
        with self._key_lock(key):
            entry = self._lookup(key, verify=verify, locked=True)
            if entry is not None:
                log.info("cache entry %s was created by another process meanwhile", entry.path)
                return entry
            self.clean_temp()
            return self._build(key, create_fn, artifact_name, validate_fn, keep_extra_files)

    def _build(
        self,
        key: CacheKey,
        create_fn: CreateFn,
        artifact_name: str,
        validate_fn: ValidateFn | None,
        keep_extra_files: bool,
    ) -> CacheEntry:
        build_dir = self.tmp_dir / f"{key.kind}-{key.digest}-{os.getpid()}-{os.urandom(4).hex()}"
        work = build_dir / "entry"
        try:
            build_dir.mkdir()
            write_json_atomic(build_dir / OWNER_NAME, owner_record(), durable=False)
            work.mkdir()
        except OSError as exc:
            remove_tree(build_dir)
            raise cache_error(self.root, exc, "creating a temporary build directory") from exc

        started = time.time()
        t0 = time.perf_counter()
        try:
            artifact, metadata = self._run_create(create_fn, work, artifact_name)
            if not keep_extra_files:
                for extra in list(work.iterdir()):
                    if extra != artifact:
                        remove_tree(extra)
            build_seconds = time.perf_counter() - t0
            validation = None
            if validate_fn is not None:
                validation = _report_dict(validate_fn(artifact), key)
        except BaseException as exc:
            remove_tree(build_dir)
            if _is_cache_storage_error(exc, self.root):
                assert isinstance(exc, OSError)
                raise cache_error(self.root, exc, f"creating {key.describe()}") from exc
            raise
        log.info("created %s in %.1f s", key.describe(), build_seconds)

        dest = self.entry_dir(key)
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
            if dest.exists():  # a bad leftover that could not be removed earlier
                self._discard_entry(dest)
            os.rename(work, dest)
        except OSError as exc:
            message = str(cache_error(self.root, exc, f"storing {key.describe()}"))
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
        remove_tree(build_dir)
        return CacheEntry(key.digest, key.kind, dest, manifest)

    @staticmethod
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

    # -- housekeeping --------------------------------------------------------------------------

    def clean_temp(self) -> int:
        """Remove temp dirs left by crashed or killed builders; return how many."""
        removed = 0
        try:
            children = list(self.tmp_dir.iterdir())
        except OSError:
            return 0
        now = time.time()
        for child in children:
            try:
                age = now - child.lstat().st_mtime
            except OSError:
                continue
            if child.name.startswith("trash-"):
                stale = True
            else:
                try:
                    owner = json.loads((child / OWNER_NAME).read_text(encoding="utf-8"))
                    alive = owner_alive(owner) if isinstance(owner, dict) else False
                    stale = alive is False or (alive is None and age > self.stale_temp_s)
                except (OSError, ValueError):
                    stale = age > UNOWNED_GRACE_S
            if stale:
                log.info("removing leftover temporary cache dir %s", child)
                remove_tree(child)
                removed += not child.exists()
        for kind in KINDS:
            for stray in (self.root / kind).glob(f"*/.{MANIFEST_NAME}.*.tmp"):
                with contextlib.suppress(OSError):
                    if now - stray.lstat().st_mtime > UNOWNED_GRACE_S:
                        stray.unlink()
        return removed

    def _entry_dirs(self) -> list[Path]:
        dirs = []
        for kind in KINDS:
            with contextlib.suppress(OSError):
                dirs.extend(p for p in (self.root / kind).iterdir() if p.is_dir())
        return sorted(dirs)

    def entries(self) -> list[CacheEntry]:
        """Every entry, usable or not (``problem`` says why not); sizes checked, not hashes."""
        found = [self._check(d, None, hashes="none") for d in self._entry_dirs()]
        return sorted(found, key=lambda e: (e.created or 0, e.digest))

    def _resolve(self, digest: str) -> Path | None:
        digest = digest.strip().lower()
        if not digest:
            return None
        matches = [d for d in self._entry_dirs() if d.name.startswith(digest)]
        exact = [d for d in matches if d.name == digest]
        if exact:
            return exact[0]
        if len(matches) > 1:
            names = ", ".join(d.name for d in matches[:5])
            raise CacheError(f"{digest!r} matches several cache entries ({names}); be more precise")
        return matches[0] if matches else None

    def info(self, digest: str) -> CacheEntry | None:
        """The entry whose digest is (or starts with) ``digest``, hashes checked; None if absent."""
        entry_dir = self._resolve(digest)
        if entry_dir is None:
            return None
        entry = self._check(entry_dir, None, hashes="indexed")
        self._index.save()
        return entry

    def remove(self, digest: str) -> bool:
        entry_dir = self._resolve(digest)
        if entry_dir is None:
            return False
        removed = self._discard_entry(entry_dir)
        if not removed and entry_dir.exists():
            raise CacheError(f"could not remove cache entry {entry_dir} (see the warning above)")
        try_lock_and_delete(self.locks_dir / f"{entry_dir.parent.name}-{entry_dir.name}.lock")
        return removed

    def clear(self) -> int:
        """Remove every entry, leftover temp dir and unheld lock; return the entries removed."""
        count = sum(self.remove(d.name) for d in self._entry_dirs())
        self.clean_temp()
        with contextlib.suppress(OSError):
            for lock in self.locks_dir.glob("*.lock"):
                try_lock_and_delete(lock)
        return count

    def prune(self, older_than_days: float) -> list[str]:
        """Remove entries not used for ``older_than_days`` days; return their digests."""
        if older_than_days < 0:
            raise ValueError("older_than_days must be >= 0")
        cutoff = time.time() - older_than_days * 86400.0
        removed = []
        for entry in self.entries():
            last = entry.last_used
            if last is None:
                with contextlib.suppress(OSError):
                    last = entry.path.stat().st_mtime
            if last is not None and float(last) < cutoff and self.remove(entry.digest):
                removed.append(entry.digest)
        self.clean_temp()
        return removed

    def size_bytes(self) -> int:
        return tree_size(self.root)
