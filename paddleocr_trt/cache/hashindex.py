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
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..log import get_logger
from .fsutil import sha256_file, write_json_atomic
from .safety import ensure_private_dir, read_trusted_bytes, untrusted_reason

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
        and all(isinstance(v, int) and not isinstance(v, bool) for v in key)
        and isinstance(digest, str)
        and len(digest) == 64
        and isinstance(seen, int | float)
        and not isinstance(seen, bool)
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
    """sha256 of files, remembered across processes in ``<index_dir>/hash-index.json``.

    ``index_dir=None`` keeps the memory in this process only.
    """

    def __init__(self, index_dir: Path | None) -> None:
        self.path = None if index_dir is None else Path(index_dir) / INDEX_FILE_NAME
        self._entries: dict[str, dict[str, object]] | None = None
        self._dirty = False
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, object]]:
        if self._entries is None:
            self._entries = self._read_disk()
        return self._entries

    def _read_disk(self) -> dict[str, dict[str, object]]:
        if self.path is None:
            return {}
        try:
            data = json.loads(read_trusted_bytes(self.path).decode("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # UntrustedPathError included: never trusted
            log.debug("ignoring unreadable hash index %s: %s", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
            return {}
        files = data.get("files")
        if not isinstance(files, dict):
            return {}
        return {path: record for path, record in files.items() if _valid_record(record)}

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

    def forget(self, path: str | Path) -> None:
        with self._lock:
            if self._load().pop(os.path.abspath(path), None) is not None:
                self._dirty = True

    def clear(self) -> None:
        """Forget everything, on disk too (``cache clear --all``); only a file of ours goes."""
        with self._lock:
            self._entries = {}
            self._dirty = False
            if self.path is None:
                return
            try:
                st = os.lstat(self.path)
            except OSError:
                return
            if untrusted_reason(st, want_dir=False) is None:
                with contextlib.suppress(OSError):
                    self.path.unlink()

    def save(self) -> None:
        """Merge this process's new hashes into the file; failures only cost re-hashing later."""
        with self._lock:
            if not self._dirty or self.path is None or self._entries is None:
                return
            merged = self._read_disk()
            merged.update(self._entries)
            if len(merged) > MAX_ENTRIES:
                newest = sorted(merged.items(), key=lambda kv: kv[1].get("seen", 0), reverse=True)
                merged = dict(newest[:MAX_ENTRIES])
            try:
                if not os.path.lexists(self.path.parent):
                    ensure_private_dir(self.path.parent)
                write_json_atomic(
                    self.path, {"version": INDEX_VERSION, "files": merged}, durable=False
                )
            except OSError as exc:
                log.debug("could not save hash index %s: %s", self.path, exc)
                return
            self._entries = merged
            self._dirty = False
