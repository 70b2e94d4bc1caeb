"""File-system helpers for the cache: durable atomic writes, OS-error wording, process liveness.

Every write the cache makes goes through here so that "disk full" and "read-only" always become
the same :class:`~paddleocr_trt.errors.CacheError` message, never a raw traceback.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from ..errors import CacheError
from .safety import O_NOFOLLOW, write_bytes_atomic
from .safety import fsync_dir as fsync_dir

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


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any, *, durable: bool = True) -> None:
    """Write JSON to an exclusive temp file beside ``path`` (0600) and rename it over."""
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"), durable=durable)


def remove_tree(path: Path) -> None:
    """Delete a file or directory tree; missing is fine (another process may have won)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def tree_size(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


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
