"""One cross-process lock per cache key, so N processes on an empty cache build once, not N times.

``fcntl.flock`` is released by the kernel when its holder dies (even by SIGKILL), so a crashed
builder can never leave a lock that blocks the next start. Lock files are only deleted by a
holder, and a taker re-checks after locking that the file it locked is still the one at the path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import CacheError
from .fsutil import owner_record

POLL_S = 0.05


def _holder(path: Path) -> str:
    try:
        owner = json.loads(path.read_text(encoding="utf-8") or "{}")
        return f"pid {owner.get('pid')} on {owner.get('host')}"
    except (OSError, ValueError):
        return "an unknown process"


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float, what: str) -> Iterator[None]:
    """Hold an exclusive flock on ``path``; CacheError after ``timeout_s`` seconds of waiting.

    OSErrors from creating the lock file propagate (the caller words them as cache errors).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise CacheError(
                            f"timed out after {timeout_s:g} s waiting for the cache lock {path} "
                            f"({what}), held by {_holder(path)}; another process is still "
                            "creating this artifact. Wait for it, or raise the lock timeout."
                        ) from None
                    time.sleep(POLL_S)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the file was deleted by its previous holder; lock the new one
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
    try:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner_record()).encode(), 0)
        yield
    finally:
        os.close(fd)


def try_lock_and_delete(path: Path) -> bool:
    """Delete a lock file nobody holds (cache clearing); False if someone holds it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                path.unlink()
        return True
    finally:
        os.close(fd)
