"""Inventory of the whole cache: list, inspect, remove, clear, prune, clean temp, size.

The entry-by-key API (``store.EngineCache.get`` / ``get_or_create``) serves and makes one entry;
this is what the ``paddleocr-trt cache`` commands and the clean-ups after a build do across all
entries. Only what the cache provably made is deleted (``housekeeping.py`` decides).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CacheError
from ..log import get_logger
from .housekeeping import (
    clean_stray_manifests,
    clean_temp,
    discard_entry,
    entry_names,
    entry_proof,
)
from .key import KINDS
from .lock import try_lock_and_delete
from .manifest import CacheEntry, check_entry

if TYPE_CHECKING:
    from .hashindex import FileHashIndex
    from .root import CacheRoot
    from .safedir import SafeDir

log = get_logger("cache")


class CacheInventory:
    """The all-entries half of :class:`store.EngineCache` (which inherits it)."""

    if TYPE_CHECKING:  # provided by EngineCache
        fsroot: CacheRoot
        root: Path
        stale_temp_s: float
        _index: FileHashIndex

        @property
        def tmp_dir(self) -> Path: ...

        def _kind_dir(self, kind: str) -> SafeDir | None: ...

    def clean_temp(self) -> int:
        """Remove temp dirs left by crashed or killed builders (only provably ours); how many."""
        try:
            return self._clean_temp(strays=True)
        except FileNotFoundError:
            return 0
        except (OSError, CacheError) as exc:
            log.warning("not cleaning %s: %s", self.tmp_dir, exc)
            return 0

    def _clean_temp(self, *, strays: bool) -> int:
        if not os.path.lexists(self.tmp_dir):
            return 0
        with self.fsroot.open_marked("tmp") as tmp:
            removed = clean_temp(tmp, self.stale_temp_s)
        for kind in KINDS if strays else ():
            kind_dir = self._kind_dir(kind)
            if kind_dir is not None:
                with kind_dir:
                    for digest in entry_names(kind_dir):
                        clean_stray_manifests(kind_dir, digest)
        return removed

    def _entry_names(self) -> list[tuple[str, str]]:
        found = []
        for kind in KINDS:
            kind_dir = self._kind_dir(kind)
            if kind_dir is not None:
                with kind_dir:
                    found += [(kind, name) for name in entry_names(kind_dir)]
        return found

    def entries(self) -> list[CacheEntry]:
        """Every entry, usable or not (``problem`` says why not); sizes checked, not hashes."""
        found = []
        for kind in KINDS:
            kind_dir = self._kind_dir(kind)
            if kind_dir is not None:
                with kind_dir:
                    found += [
                        check_entry(kind_dir, name, None, self._index, hashes="none")
                        for name in entry_names(kind_dir)
                    ]
        return sorted(found, key=lambda e: (e.created or 0, e.digest))

    def _resolve(self, digest: str) -> tuple[str, str] | None:
        digest = digest.strip().lower()
        if not digest:
            return None
        matches = [(k, d) for k, d in self._entry_names() if d.startswith(digest)]
        exact = [(k, d) for k, d in matches if d == digest]
        if exact:
            return exact[0]
        if len(matches) > 1:
            names = ", ".join(d for _, d in matches[:5])
            raise CacheError(f"{digest!r} matches several cache entries ({names}); be more precise")
        return matches[0] if matches else None

    def info(self, digest: str) -> CacheEntry | None:
        """The entry whose digest is (or starts with) ``digest``, hashes checked; None if absent."""
        found = self._resolve(digest)
        if found is None:
            return None
        kind_dir = self._kind_dir(found[0])
        if kind_dir is None:
            return None
        with kind_dir:
            entry = check_entry(kind_dir, found[1], None, self._index, hashes="indexed")
        self._index.save()
        return entry

    def remove(self, digest: str) -> bool:
        found = self._resolve(digest)
        if found is None:
            return False
        kind, name = found
        with self.fsroot.open_marked(kind) as kind_dir:
            why = entry_proof(kind_dir, name)
            if why is not None:
                raise CacheError(
                    f"not removing {kind_dir.path / name}: {why}; the cache only deletes what it "
                    "created"
                )
            with self.fsroot.open("tmp", create=True) as tmp:
                removed = discard_entry(kind_dir, tmp, name)
            if not removed and kind_dir.lstat(name) is not None:
                raise CacheError(f"could not remove cache entry {kind_dir.path / name}")
        with contextlib.suppress(OSError, CacheError), self.fsroot.open_marked("locks") as locks:
            try_lock_and_delete(locks, f"{kind}-{name}.lock")
        return removed

    def clear(self) -> int:
        """Remove every entry, leftover temp dir and unheld lock; return the entries removed."""
        if not os.path.lexists(self.root):
            return 0
        count = 0
        for _kind, name in self._entry_names():
            try:
                count += self.remove(name)
            except CacheError as exc:
                log.warning("%s", exc)
        self.clean_temp()
        with contextlib.suppress(OSError, CacheError), self.fsroot.open_marked("locks") as locks:
            for name in locks.names():
                if name.endswith(".lock"):
                    try_lock_and_delete(locks, name)
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
        try:
            with self.fsroot.open() as root:
                return root.tree_size()
        except (FileNotFoundError, CacheError):
            return 0
