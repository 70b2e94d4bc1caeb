"""One cross-process lock per cache key, so N processes on an empty cache build once, not N times.

``fcntl.flock`` is released by the kernel when its holder dies (even by SIGKILL), so a crashed
builder can never leave a lock that blocks the next start. Lock files are only deleted by a
holder, and a taker re-checks after locking that the file it locked is still the one at the path.
Lock names are predictable, so they are opened ``O_NOFOLLOW`` and checked on the descriptor: a
link or a file of another user planted in ``locks/`` is refused, never written through. A waiter
says who holds the lock, at once and then every :data:`REPORT_EVERY_S` seconds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import CacheError
from ..log import get_logger
from .fsutil import owner_record
from .safety import O_NOFOLLOW, PRIVATE_FILE_MODE, UntrustedPathError, untrusted_reason

log = get_logger("cache")

POLL_S = 0.05
#: a waiter logs who holds the lock after this long, then again every REPORT_EVERY_S
FIRST_REPORT_S = 1.0
REPORT_EVERY_S = 30.0


def _holder(fd: int) -> str:
    try:
        owner = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        return f"pid {owner.get('pid')} on {owner.get('host')}"
    except (OSError, ValueError, AttributeError):
        return "an unknown process"


def _open_lock(path: Path, create: bool) -> int:
    """Open a lock file without following links; refuse one we do not own."""
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags | O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedPathError(
                f"{path} is a symbolic link; the cache refuses to use it"
            ) from None
        raise
    reason = untrusted_reason(os.fstat(fd), want_dir=False)
    if reason is not None:
        os.close(fd)
        raise UntrustedPathError(f"lock file {path} {reason}; the cache refuses to use it")
    return fd


@contextlib.contextmanager
def file_lock(
    path: Path, timeout_s: float, what: str, *, report_every_s: float | None = None
) -> Iterator[None]:
    """Hold an exclusive flock on ``path``; CacheError after ``timeout_s`` seconds of waiting.

    While waiting, logs who holds it after FIRST_REPORT_S, then every ``report_every_s``
    (default REPORT_EVERY_S). OSErrors from creating the lock file propagate (the caller words
    them as cache errors).
    """
    report_every_s = REPORT_EVERY_S if report_every_s is None else report_every_s
    start = time.monotonic()
    deadline = start + timeout_s
    next_report = start + min(FIRST_REPORT_S, report_every_s)
    while True:
        fd = _open_lock(path, create=True)
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
        fd = _open_lock(path, create=False)
    except FileNotFoundError:
        return True
    except (UntrustedPathError, OSError):
        return False  # not ours: never deleted
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
