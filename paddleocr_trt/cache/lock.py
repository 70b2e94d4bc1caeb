"""One cross-process lock per cache key, so N processes on an empty cache build once, not N times.

``fcntl.flock`` is released by the kernel when its holder dies (even by SIGKILL), so a crashed
builder can never leave a lock that blocks the next start. Lock files are only deleted by a
holder, and a taker re-checks after locking that the file it locked is still the one at the path.
Lock names are predictable, so they are opened with the cache's one primitive,
:meth:`SafeDir.open_file` (through the locks dir's descriptor, ``O_NOFOLLOW``, checked on the
descriptor): a symlink, a hard link (link count > 1) or a file
of another user planted in ``locks/`` is refused, never written through, and a lock file is never
truncated (the holder's record is written in place, padded to a fixed size). A waiter says who
holds the lock, at once and then every :data:`REPORT_EVERY_S` seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator

from ..errors import CacheError
from ..log import get_logger
from .fsutil import owner_record
from .safedir import SafeDir, file_problem
from .safety import UntrustedPathError

log = get_logger("cache")

POLL_S = 0.05
#: a waiter logs who holds the lock after this long, then again every REPORT_EVERY_S
FIRST_REPORT_S = 1.0
REPORT_EVERY_S = 30.0
#: the holder's JSON record is padded with spaces to this size (written in place, never truncated)
RECORD_BYTES = 512


def _holder(fd: int) -> str:
    try:
        owner = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        return f"pid {owner.get('pid')} on {owner.get('host')}"
    except (OSError, ValueError, AttributeError):
        return "an unknown process"


def _open_lock(directory: SafeDir, name: str, create: bool) -> int:
    """Open a lock file read-write through ``directory`` (the cache's one primitive,
    :meth:`SafeDir.open_file`): no link followed, a hard-linked one or one we do not own
    refused, created exclusively 0600, never truncated."""
    try:
        return directory.open_file(name, os.O_RDWR, create=create)
    except UntrustedPathError as exc:
        raise UntrustedPathError(f"lock file {exc}") from None


def _same_file(directory: SafeDir, name: str, fd: int) -> bool:
    try:
        st = os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return os.fstat(fd).st_ino == st.st_ino and os.fstat(fd).st_dev == st.st_dev


@contextlib.contextmanager
def lock_in(
    directory: SafeDir,
    name: str,
    timeout_s: float,
    what: str,
    *,
    report_every_s: float | None = None,
) -> Iterator[None]:
    """Hold an exclusive flock on ``directory/name``; CacheError after ``timeout_s`` of waiting.

    While waiting, logs who holds it after FIRST_REPORT_S, then every ``report_every_s``
    (default REPORT_EVERY_S). OSErrors from creating the lock file propagate (the caller words
    them as cache errors).
    """
    path = directory.path / name
    report_every_s = REPORT_EVERY_S if report_every_s is None else report_every_s
    start = time.monotonic()
    deadline = start + timeout_s
    next_report = start + min(FIRST_REPORT_S, report_every_s)
    while True:
        fd = _open_lock(directory, name, create=True)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    now = time.monotonic()
                    if now >= deadline:
                        raise CacheError(
                            f"timed out after {timeout_s:g} s waiting for the cache lock {path} "
                            f"({what}), held by {_holder(fd)}; another process is still "
                            "creating this artifact. Wait for it, or raise the lock timeout."
                        ) from None
                    if now >= next_report:
                        log.warning(
                            "waiting for %s: the cache lock %s is held by %s, which is "
                            "creating it (waited %.0f s, giving up after %.0f s)",
                            what,
                            path,
                            _holder(fd),
                            now - start,
                            timeout_s,
                        )
                        next_report = now + report_every_s
                    time.sleep(POLL_S)
            if _same_file(directory, name, fd) and file_problem(os.fstat(fd)) is None:
                break
            os.close(fd)  # deleted (or re-linked) meanwhile; lock what is there now
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
    try:
        record = json.dumps(owner_record()).encode()
        with contextlib.suppress(OSError):
            os.pwrite(fd, record.ljust(RECORD_BYTES), 0)
        yield
    finally:
        os.close(fd)


def _is_lock_record(fd: int) -> bool:
    """Empty, or the holder record this module writes: a lock file the cache made."""
    try:
        text = os.pread(fd, RECORD_BYTES + 1, 0).decode("utf-8").strip()
        if not text:
            return True
        data = json.loads(text)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and set(data) == {"pid", "host", "pid_start"}


def try_lock_and_delete(directory: SafeDir, name: str) -> bool:
    """Delete a lock file nobody holds, if it is provably one of the cache's (ours, nlink 1,
    holding a holder record); False if held or not ours (never deleted)."""
    try:
        fd = _open_lock(directory, name, create=False)
    except FileNotFoundError:
        return True
    except (UntrustedPathError, OSError, ValueError):
        return False  # not ours: never deleted
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if not _is_lock_record(fd):
            return False
        if _same_file(directory, name, fd):
            directory.unlink(name)  # unlinkat through the descriptor, a regular file of ours
        return True
    finally:
        os.close(fd)
