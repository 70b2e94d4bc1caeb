"""The on-disk artifact cache: never serve a stale, foreign, corrupt or half-written artifact.

Layout under the root (``settings.default_cache_dir()`` unless given)::

    <root>/<kind>/<digest>/        one entry: artifact file(s) + manifest.json
    <root>/locks/<digest>.lock     flock per key while an entry is (re)created
    <root>/tmp/<build id>/         entries being built (owner.json + entry/), renamed into place
    <root>/hash-index.json         stat -> sha256 memory (see hashindex.py)
    <root>/failures/<kind>-<digest>.json   remembered failures (see failures.py)
    <root>/CACHEDIR.TAG            the mark: the cache deletes nothing under an unmarked root

Which directory is the root is decided in root.py (``~`` or a populated dir gets a subdirectory);
every path below it is reached through directory descriptors (safedir.py), never followed links.

An entry becomes visible only by ``rename(2)`` of a fully written, fsynced directory that already
holds its manifest, so readers see a whole entry or none. Every read re-checks the manifest
against the requested key and the files against their recorded size and sha256; an entry that
fails is logged, removed and rebuilt rather than trusted. What may be served, cleaned and deleted
is decided in manifest.py and housekeeping.py; the file-system primitive is in safedir.py.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import CacheError
from ..log import get_logger
from ..model_types import ModelFiles
from ..settings import default_cache_dir
from .build import CachePublishError, CreateFn, ValidateFn, build_entry
from .fingerprint import ModelFingerprint, fingerprint_model_dir
from .fsutil import cache_error
from .hashindex import FileHashIndex
from .housekeeping import (
    OWNER_NAME,
    UNOWNED_GRACE_S,
    discard_entry,
    entry_proof,
    move_aside,
)
from .inventory import CacheInventory
from .key import CacheKey
from .lock import lock_in
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, CacheEntry, check_entry, is_plain_name
from .root import CacheRoot, CacheRootError
from .safedir import SafeDir
from .safety import UntrustedPathError

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


class EngineCache(CacheInventory):
    """Content-addressed cache of ONNX files and TensorRT engines; safe across processes.

    Serving and making an entry by key is here; listing, removing and pruning all entries is
    :class:`inventory.CacheInventory`'s.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        stale_temp_s: float = DEFAULT_STALE_TEMP_S,
    ) -> None:
        requested = Path(root).expanduser() if root is not None else default_cache_dir()
        #: every file-system access goes through this (see root.py / safedir.py)
        self.fsroot = CacheRoot(requested)
        self.root = self.fsroot.path
        self.lock_timeout_s = lock_timeout_s
        self.stale_temp_s = stale_temp_s
        self._index = FileHashIndex(self.fsroot)
        self._warned: set[str] = set()

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

    def _kind_dir(self, kind: str) -> SafeDir | None:
        """The kind dir, or None when missing or refused (warned once)."""
        try:
            return self.fsroot.open(kind)
        except FileNotFoundError:
            return None
        except CacheRootError:
            raise  # the root itself is refused: every command says so
        except UntrustedPathError as exc:
            if str(exc) not in self._warned:
                self._warned.add(str(exc))
                log.warning("ignoring %s: %s", self.root / kind, exc)
            return None
        except OSError as exc:
            raise cache_error(self.root, exc, f"reading {self.root / kind}") from exc

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: CacheKey, *, verify: bool = False) -> CacheEntry | None:
        """The valid entry for ``key``, or None (a bad entry is logged and removed).

        File hashes are always compared; ``verify=True`` re-reads the files even when the hash
        index says they are unchanged since they were last hashed.
        """
        return self._lookup(key, verify=verify, locked=False)

    def _lookup(self, key: CacheKey, *, verify: bool, locked: bool) -> CacheEntry | None:
        kind_dir = self._kind_dir(key.kind)
        if kind_dir is None:
            return None
        with kind_dir:
            if kind_dir.lstat(key.digest) is None:
                return None
            hashes = "full" if verify else "indexed"
            entry = check_entry(kind_dir, key.digest, key, self._index, hashes=hashes)
        self._index.save()
        if entry.problem is None:
            self._touch(entry)
            if not locked:  # leftovers of killed builders go on hits too, not only on builds
                with contextlib.suppress(OSError, CacheError):
                    self._clean_temp(strays=False)
            return entry
        log.warning(
            "cache entry %s (%s) is %s: %s; rebuilding it",
            entry.path,
            key.describe(),
            "not trusted" if entry.untrusted else "unusable",
            entry.problem,
        )
        if locked:
            self._discard_entry(key.kind, key.digest)
        else:
            self._invalidate_unlocked(key)
        return None

    def invalidate(self, entry: CacheEntry, reason: str) -> bool:
        """Drop an entry its user found unusable (e.g. TensorRT would not deserialize it).

        Only that very entry is removed: if another process has meanwhile replaced it with a
        new build, the new one stays. Returns whether something was removed.
        """
        kind_dir = self._kind_dir(entry.kind)
        if kind_dir is None:
            return False
        with kind_dir:
            current = check_entry(kind_dir, entry.digest, None, self._index, hashes="none")
        if current.manifest and (
            current.manifest.get("created") != entry.manifest.get("created")
            or current.manifest.get("files") != entry.manifest.get("files")
        ):
            return False
        log.warning(
            "cache entry %s is unusable: %s; removing it so it is rebuilt", entry.path, reason
        )
        return self._discard_entry(entry.kind, entry.digest)

    def _invalidate_unlocked(self, key: CacheKey) -> None:
        """Remove a bad entry only under its lock and if still bad: a concurrent builder may
        have replaced it with a good one meanwhile. If the lock is busy, its holder will deal."""
        try:
            with (
                self.fsroot.open("locks", create=True) as locks,
                lock_in(locks, self._lock_name(key), 0.0, key.describe()),
            ):
                kind_dir = self._kind_dir(key.kind)
                if kind_dir is None:
                    return
                with kind_dir:
                    if kind_dir.lstat(key.digest) is None:
                        return
                    again = check_entry(kind_dir, key.digest, key, self._index, hashes="indexed")
                if again.problem is not None:
                    self._discard_entry(key.kind, key.digest)
        except CacheError:
            log.debug("%s is locked or refused; leaving the bad entry", self.entry_dir(key))
        except OSError as exc:
            log.warning("could not remove bad cache entry %s: %s", self.entry_dir(key), exc)

    def _discard_entry(self, kind: str, digest: str) -> bool:
        """Delete one of our entries (proven by its manifest), or move an unprovable one aside
        (never deleting it). Only under a marked root."""
        try:
            with (
                self.fsroot.open_marked(kind) as kind_dir,
                self.fsroot.open("tmp", create=True) as tmp,
            ):
                why = entry_proof(kind_dir, digest)
                if why is None:
                    return discard_entry(kind_dir, tmp, digest)
                if why == "it does not exist":
                    return False
                return move_aside(kind_dir, tmp, digest) is not None
        except (OSError, CacheError) as exc:
            log.warning("could not remove or move aside %s: %s", self.root / kind / digest, exc)
            return False

    def _touch(self, entry: CacheEntry) -> None:
        """Best-effort last-used update, written through the entry's directory fd so that a
        concurrently replaced entry is never given this (older) manifest."""
        now = time.time()
        if now - (entry.last_used or 0.0) < LAST_USED_RESOLUTION_S:
            return
        manifest = dict(entry.manifest, last_used=now)
        try:
            with self.fsroot.open(entry.kind, entry.digest) as entry_dir:
                entry_dir.write_json(MANIFEST_NAME, manifest, durable=False)
            entry.manifest["last_used"] = now
        except (OSError, CacheError) as exc:
            log.debug("could not update last-used time of %s: %s", entry.path, exc)

    # -- creating ------------------------------------------------------------------------------

    @staticmethod
    def _lock_name(key: CacheKey) -> str:
        return f"{key.kind}-{key.digest}.lock"

    @contextlib.contextmanager
    def _key_lock(self, key: CacheKey) -> Iterator[None]:
        try:
            with self.fsroot.open(create=True) as root:
                for name in (key.kind, "tmp"):
                    root.child(name, create=True).close()
                locks = root.child("locks", create=True)
            try:
                lock = lock_in(locks, self._lock_name(key), self.lock_timeout_s, key.describe())
                lock.__enter__()
            except BaseException:
                locks.close()
                raise
        except OSError as exc:
            raise cache_error(self.root, exc, "taking the entry lock") from exc
        try:
            yield
        finally:
            lock.__exit__(None, None, None)
            locks.close()

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
