"""A persistent ``stat -> sha256`` index so big files are hashed once, not at every start.

Model weights are ~10-100 MB and engines as much; reading them at every interpreter start would
cost more than the cache saves. A file whose absolute path, size, mtime_ns, ctime_ns, inode and
device are all unchanged is taken to have unchanged content (the same bet ``git status`` and
``make`` make); any change re-reads it. Like git's "racily clean" rule, a file modified within
:data:`RACY_WINDOW_S` of being hashed is not recorded, because a second write within the same
timestamp tick could leave its stat unchanged.

The index is an optimisation only: unreadable or unwritable means "hash again", never an error.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..log import get_logger
from .fsutil import sha256_file
from .safety import UntrustedPathError

if TYPE_CHECKING:
    from .root import CacheRoot
    from .safedir import SafeDir

log = get_logger("cache")

INDEX_FILE_NAME = "hash-index.json"
INDEX_VERSION = 1
MAX_ENTRIES = 2048
RACY_WINDOW_S = 2.0


def _valid_record(record: object) -> bool:
    """A record as :meth:`FileHashIndex.sha256` writes it; anything else is dropped on load."""
    if not isinstance(record, dict):
        return False
    key, digest, seen = record.get("stat"), record.get("sha256"), record.get("seen", 0)
    return (
        isinstance(key, list)
        and len(key) == 5
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in key)
        and isinstance(digest, str)
        and len(digest) == 64
        and all(c in "0123456789abcdef" for c in digest)
        and isinstance(seen, int | float)
        and not isinstance(seen, bool)
        and math.isfinite(seen)
    )


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


@dataclass(frozen=True)
class HashResult:
    sha256: str
    size: int
    #: bytes read to answer (0 when the index answered)
    bytes_hashed: int


class FileHashIndex:
    """sha256 of files, remembered across processes in ``<root>/hash-index.json``.

    ``index_dir`` is a :class:`CacheRoot` (or a dir, taken as one); None keeps the memory in
    this process only. The file is read and written only through the root's descriptors.
    """

    def __init__(self, index_dir: CacheRoot | Path | None) -> None:
        from .root import CacheRoot

        if index_dir is not None and not isinstance(index_dir, CacheRoot):
            index_dir = CacheRoot(index_dir)
        self.root = index_dir
        self.path = None if index_dir is None else index_dir.path / INDEX_FILE_NAME
        self._entries: dict[str, dict[str, object]] | None = None
        self._dirty = False
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, object]]:
        if self._entries is None:
            self._entries = self._read_disk()
        return self._entries

    def _read_disk(self) -> dict[str, dict[str, object]]:
        if self.root is None:
            return {}
        try:
            with self.root.open() as root:
                data = root.read_json(INDEX_FILE_NAME)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, UntrustedPathError) as exc:  # never trusted
            log.debug("ignoring unreadable hash index %s: %s", self.path, exc)
            return {}
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, dict) or data.get("version") != INDEX_VERSION:
            return {}
        kept = {p: r for p, r in files.items() if os.path.isabs(p) and _valid_record(r)}
        if len(kept) != len(files):
            log.warning(
                "hash index %s: dropped %d malformed records (it is only a memory of hashes)",
                self.path,
                len(files) - len(kept),
            )
        return kept

    def sha256(self, path: str | Path, *, trust_index: bool = True) -> HashResult:
        """Content hash of ``path``; from the index when its stat is unchanged."""
        abspath = os.path.abspath(path)
        st = os.stat(abspath)
        key = _stat_key(st)
        with self._lock:
            known = self._load().get(abspath)
        if trust_index and known and known.get("stat") == key:
            return HashResult(str(known["sha256"]), st.st_size, 0)
        digest = sha256_file(Path(abspath))
        after = os.stat(abspath)
        recent = time.time() - max(after.st_mtime, after.st_ctime) < RACY_WINDOW_S
        if _stat_key(after) == key and not recent:
            with self._lock:
                self._load()[abspath] = {"stat": key, "sha256": digest, "seen": time.time()}
                self._dirty = True
        return HashResult(digest, st.st_size, st.st_size)

    def sha256_in(self, directory: SafeDir, name: str, *, trust_index: bool = True) -> str:
        """Content hash of a cache file, opened through ``directory``'s descriptor."""
        abspath = str(directory.path / name)
        st = directory.lstat(name)
        known = None
        if st is not None and trust_index:
            with self._lock:
                known = self._load().get(abspath)
        if known and st is not None and known.get("stat") == _stat_key(st):
            return str(known["sha256"])
        digest, before = directory.sha256(name)
        after = directory.lstat(name)
        recent = time.time() - max(before.st_mtime, before.st_ctime) < RACY_WINDOW_S
        if after is not None and _stat_key(after) == _stat_key(before) and not recent:
            with self._lock:
                self._load()[abspath] = {
                    "stat": _stat_key(before),
                    "sha256": digest,
                    "seen": time.time(),
                }
                self._dirty = True
        return digest

    def forget(self, path: str | Path) -> None:
        with self._lock:
            if self._load().pop(os.path.abspath(path), None) is not None:
                self._dirty = True

    def clear(self) -> None:
        """Forget everything, on disk too (``cache clear --all``); only a file of ours goes."""
        with self._lock:
            self._entries = {}
            self._dirty = False
            if self.root is None:
                return
            # only a file of ours that is a hash index of this schema (the root is marked)
            with (
                contextlib.suppress(OSError, ValueError, UntrustedPathError),
                self.root.open_marked() as root,
            ):
                data = root.read_json(INDEX_FILE_NAME)
                if isinstance(data, dict) and data.get("version") == INDEX_VERSION:
                    root.unlink(INDEX_FILE_NAME)

    def save(self) -> None:
        """Merge this process's new hashes into the file; failures only cost re-hashing later."""
        with self._lock:
            if not self._dirty or self.root is None or self._entries is None:
                return
            merged = self._read_disk()
            merged.update(self._entries)
            if len(merged) > MAX_ENTRIES:
                newest = sorted(merged.items(), key=lambda kv: kv[1].get("seen", 0), reverse=True)
                merged = dict(newest[:MAX_ENTRIES])
            try:
                with self.root.open(create=True) as root:
                    root.write_json(
                        INDEX_FILE_NAME, {"version": INDEX_VERSION, "files": merged}, durable=False
                    )
            except (OSError, UntrustedPathError) as exc:
                log.debug("could not save hash index %s: %s", self.path, exc)
                return
            self._entries = merged
            self._dirty = False
