"""File-system helpers for the cache: durable atomic writes, OS-error wording, process liveness.

OS errors met by the cache become one :class:`~paddleocr_trt.errors.CacheError` message here
("disk full", "read-only"), never a raw traceback; the writes themselves go through safedir.py.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from ..errors import CacheError

#: errno values that mean "this directory cannot take writes", whoever's fault it is.
NOT_WRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
#: errno values that mean "no space": full disk, quota, or a file-size limit (RLIMIT_FSIZE).
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
HASH_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_storage_error(exc: BaseException) -> bool:
    """An OSError that says the cache's storage, not the caller's code, is the problem."""
    return isinstance(exc, OSError) and exc.errno in NOT_WRITABLE_ERRNOS | FULL_ERRNOS


def cache_error(root: Path, exc: OSError, doing: str) -> CacheError:
    """Turn an OSError met while ``doing`` something under ``root`` into a clear CacheError."""
    reason = f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    if exc.errno in NOT_WRITABLE_ERRNOS:
        message = f"cache directory {root} is not writable: {doing} failed: {reason}"
    elif exc.errno in FULL_ERRNOS:
        message = (
            f"cache directory {root} is full (no space left, quota or file-size limit): "
            f"{doing} failed: {reason}"
        )
    else:
        message = f"cache directory {root}: {doing} failed: {reason}"
    error = CacheError(message)
    error.errno = exc.errno  # type: ignore[attr-defined]
    return error


def remove_tree(path: Path) -> None:
    """Delete a file or directory tree by path (tests and scratch dirs; never a cache path:
    the cache deletes through :meth:`SafeDir.remove_tree`)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


HOSTNAME = socket.gethostname()


def process_start_time(pid: int) -> str | None:
    """Kernel start time of ``pid`` (Linux), so a recycled pid is not mistaken for its owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # field 22; the command name (field 2) may hold spaces, so split after its ")"
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def owner_record() -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "host": HOSTNAME, "pid_start": process_start_time(pid)}


def owner_alive(owner: dict[str, Any]) -> bool | None:
    """True/False for an owner on this host; None when it cannot be told (other host)."""
    if owner.get("host") != HOSTNAME:
        return None
    try:
        pid = int(owner["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    recorded = owner.get("pid_start")
    return recorded is None or process_start_time(pid) in (None, recorded)
