"""The on-disk artifact cache: never serve a stale, foreign, corrupt or half-written artifact.

Layout under the root (``settings.default_cache_dir()`` unless given)::

    <root>/<kind>/<digest>/        one entry: artifact file(s) + manifest.json
    <root>/locks/<digest>.lock     flock per key while an entry is (re)created
    <root>/tmp/<build id>/         entries being built (owner.json + entry/), renamed into place
    <root>/hash-index.json         stat -> sha256 memory (see hashindex.py)

An entry becomes visible only by ``rename(2)`` of a fully written, fsynced directory that already
holds its manifest, so readers see a whole entry or none. Every read re-checks the manifest
against the requested key and the files against their recorded size and sha256; an entry that
fails is logged, removed and rebuilt rather than trusted. What may be served, cleaned and deleted
is decided in manifest.py and housekeeping.py; the write primitives are in safety.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import CacheError
from ..log import get_logger
from ..model_types import ModelFiles
from ..settings import default_cache_dir
from .build import CachePublishError, CreateFn, ValidateFn, build_entry
from .fingerprint import ModelFingerprint, fingerprint_model_dir
from .fsutil import cache_error, tree_size
from .hashindex import FileHashIndex
from .housekeeping import (
    OWNER_NAME,
    UNOWNED_GRACE_S,
    clean_temp,
    discard_entry,
    entry_dirs,
    move_aside,
    provably_ours,
)
from .key import KINDS, CacheKey
from .lock import file_lock, try_lock_and_delete
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, CacheEntry, check_entry, is_plain_name
from .safety import PRIVATE_FILE_MODE, UntrustedPathError, check_trusted, ensure_private_dir

#: re-exported: callers import these from here
__all__ = [
    "MANIFEST_NAME",
    "OWNER_NAME",
    "SCHEMA_VERSION",
    "UNOWNED_GRACE_S",
    "CacheEntry",
    "CachePublishError",
    "CreateFn",
    "EngineCache",
    "ValidateFn",
]

log = get_logger("cache")

#: last-used times are rewritten at most this often (a hit should not always cost a write)
LAST_USED_RESOLUTION_S = 3600.0
DEFAULT_LOCK_TIMEOUT_S = 1800.0  # an engine build of a large model can take many minutes
DEFAULT_STALE_TEMP_S = 3600.0  # temp dirs of owners we cannot check (other hosts)


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

    def fingerprint(self, model_dir: str | Path | ModelFiles) -> ModelFingerprint:
        """Content fingerprint of a model dir, remembered in this cache's hash index."""
        return fingerprint_model_dir(model_dir, self._index)

    # -- reading -------------------------------------------------------------------------------

    def _check(self, entry_dir: Path, key: CacheKey | None, *, hashes: str) -> CacheEntry:
        """Inspect one entry dir; ``hashes``: "full" re-reads, "indexed" trusts stat, "none"."""
        return check_entry(entry_dir, key, self._index, hashes=hashes)

    def get(self, key: CacheKey, *, verify: bool = False) -> CacheEntry | None:
        """The valid entry for ``key``, or None (a bad entry is logged and removed).

        File hashes are always compared; ``verify=True`` re-reads the files even when the hash
        index says they are unchanged since they were last hashed.
        """
        return self._lookup(key, verify=verify, locked=False)

    def _lookup(self, key: CacheKey, *, verify: bool, locked: bool) -> CacheEntry | None:
        entry_dir = self.entry_dir(key)
        if not os.path.lexists(entry_dir):
            return None
        entry = self._check(entry_dir, key, hashes="full" if verify else "indexed")
        self._index.save()
        if entry.problem is None:
            self._touch(entry)
            if not locked:  # leftovers of killed builders go on hits too, not only on builds
                clean_temp(self.root, self.tmp_dir, self.stale_temp_s, strays=False)
            return entry
        log.warning(
            "cache entry %s (%s) is %s: %s; rebuilding it",
            entry_dir,
            key.describe(),
            "not trusted" if entry.untrusted else "unusable",
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
        current = self._check(entry.path, None, hashes="none").manifest or None
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
            ensure_private_dir(self.locks_dir)
            with file_lock(self._lock_path(key), 0.0, key.describe()):
                if os.path.lexists(entry_dir):
                    again = self._check(entry_dir, key, hashes="indexed")
                    if again.problem is not None:
                        self._discard_entry(entry_dir)
        except CacheError:
            log.debug("%s is locked by another process; leaving the bad entry to it", entry_dir)
        except OSError as exc:
            log.warning("could not remove bad cache entry %s: %s", entry_dir, exc)

    def _discard_entry(self, entry_dir: Path) -> bool:
        """Delete one of our entries, or move a foreign/linked one aside (never deleting it)."""
        try:
            ensure_private_dir(self.tmp_dir)
        except (OSError, CacheError) as exc:
            log.warning("could not remove cache entry %s: %s", entry_dir, exc)
            return False
        why = provably_ours(entry_dir)
        if why is None:
            return discard_entry(self.tmp_dir, entry_dir)
        if why == "it does not exist":
            return False
        try:
            check_kind = self.root / entry_dir.parent.name
            if entry_dir.parent != check_kind or entry_dir.parent.parent != self.root:
                return False
            ensure_private_dir(check_kind)  # only rename inside a kind dir that is ours
            return move_aside(self.tmp_dir, entry_dir) is not None
        except (OSError, CacheError) as exc:
            log.warning("could not move %s aside: %s", entry_dir, exc)
            return False

    def _touch(self, entry: CacheEntry) -> None:
        """Best-effort last-used update, written through the entry's directory fd so that a
        concurrently replaced entry is never given this (older) manifest."""
        now = time.time()
        if now - (entry.last_used or 0.0) < LAST_USED_RESOLUTION_S:
            return
        manifest = dict(entry.manifest, last_used=now)
        tmp_name = f".{MANIFEST_NAME}.{os.urandom(8).hex()}.tmp"
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            dir_fd = os.open(entry.path, flags)
        except OSError:
            return
        try:
            fd = os.open(
                tmp_name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                PRIVATE_FILE_MODE,
                dir_fd=dir_fd,
            )
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

    def _ensure_root(self) -> None:
        """Create the root 0700 if missing; an existing root (maybe shared) is left as it is."""
        if not os.path.lexists(self.root):
            ensure_private_dir(self.root)

    @contextlib.contextmanager
    def _key_lock(self, key: CacheKey) -> Iterator[None]:
        try:
            self._ensure_root()
            for path in (self.root / key.kind, self.locks_dir, self.tmp_dir):
                ensure_private_dir(path)
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
        if not is_plain_name(artifact_name) or artifact_name == MANIFEST_NAME:
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
            return build_entry(self, key, create_fn, artifact_name, validate_fn, keep_extra_files)

    # -- housekeeping --------------------------------------------------------------------------

    def clean_temp(self) -> int:
        """Remove temp dirs left by crashed or killed builders (only provably ours); how many."""
        return clean_temp(self.root, self.tmp_dir, self.stale_temp_s)

    def _entry_dirs(self) -> list[Path]:
        return [d for kind in KINDS for d in entry_dirs(self.root, kind)]

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
        why = provably_ours(entry_dir)
        if why is not None:
            raise CacheError(
                f"not removing {entry_dir}: {why}; the cache only deletes what it created"
            )
        removed = discard_entry(self.tmp_dir, entry_dir)
        if not removed and os.path.lexists(entry_dir):
            raise CacheError(f"could not remove cache entry {entry_dir} (see the warning above)")
        try_lock_and_delete(self.locks_dir / f"{entry_dir.parent.name}-{entry_dir.name}.lock")
        return removed

    def clear(self) -> int:
        """Remove every entry, leftover temp dir and unheld lock; return the entries removed."""
        count = 0
        for entry_dir in self._entry_dirs():
            try:
                count += self.remove(entry_dir.name)
            except CacheError as exc:
                log.warning("%s", exc)
        self.clean_temp()
        with contextlib.suppress(OSError, UntrustedPathError):
            check_trusted(self.locks_dir, want_dir=True)
            for lock in self.locks_dir.glob("*.lock"):
                try_lock_and_delete(lock)
        self._index.clear()
        return count

    def prune(self, older_than_days: float) -> list[str]:
        """Remove entries not used for ``older_than_days`` days; return their digests."""
        if older_than_days < 0:
            raise ValueError("older_than_days must be >= 0")
        cutoff = time.time() - older_than_days * 86400.0
        removed = []
        for entry in self.entries():
            if entry.untrusted:
                continue
            last = entry.last_used
            if last is None:
                with contextlib.suppress(OSError):
                    last = entry.path.lstat().st_mtime
            if last is not None and last < cutoff:
                try:
                    if self.remove(entry.digest):
                        removed.append(entry.digest)
                except CacheError as exc:
                    log.warning("%s", exc)
        self.clean_temp()
        return removed

    def size_bytes(self) -> int:
        return tree_size(self.root)
