"""Trust rules, and writes to paths *outside* the cache (a user's ``-o`` file).

The cache itself touches the file system only through :mod:`.safedir` (directory descriptors
walked from its root); this module holds the rule both use: a directory or file is *trusted*
only if it is not a symlink, is owned by the current user and is not writable by group or
others; what the cache creates is 0700 (dirs) / 0600 (files) whatever the umask. The path-based
helpers below are for outputs the user names (``-o``) and rendered sample images, never for
cache paths.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from ..errors import CacheError, OutputPathError

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "UntrustedPathError",
    "check_output_path",
    "copy_file_atomic",
    "copy_output",
    "create_exclusive",
    "fsync_dir",
    "open_nofollow",
    "untrusted_reason",
    "write_bytes_atomic",
]

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: permission bits that let someone other than the owner change a file or directory
FOREIGN_WRITE_BITS = stat.S_IWGRP | stat.S_IWOTH
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UntrustedPathError(CacheError):
    """A path in the cache is a symlink, not ours, writable by others or of the wrong type."""


def untrusted_reason(st: os.stat_result, *, want_dir: bool) -> str | None:
    """Why a file/dir with this ``lstat``/``fstat`` result may not be trusted; None if it may."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if want_dir and not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if not want_dir and not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by the current user (uid {os.geteuid()})"
    if st.st_mode & FOREIGN_WRITE_BITS:
        return f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def open_nofollow(path: Path, flags: int = os.O_RDONLY) -> int:
    """Open without following a final symlink; the fd must then be checked with ``fstat``
    (used by bundle.py for files it reads from entries it has just checked)."""
    return os.open(path, flags | O_NOFOLLOW | O_CLOEXEC)


def create_exclusive(directory: Path, prefix: str, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new 0600 file with an unpredictable name in ``directory`` (O_EXCL|O_NOFOLLOW)."""
    for _ in range(100):
        path = directory / f"{prefix}{os.urandom(8).hex()}{suffix}"
        try:
            fd = os.open(
                path,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                PRIVATE_FILE_MODE,
            )
        except FileExistsError:
            continue
        return fd, path
    raise FileExistsError(f"could not create a unique temporary file in {directory}")


def write_bytes_atomic(
    path: Path, data: bytes, *, durable: bool = True, mode: int = PRIVATE_FILE_MODE
) -> None:
    """Replace ``path`` by a new file holding ``data``; readers see the old or the new file.

    The temp file is created exclusively under an unpredictable name; a symlink at ``path``
    is replaced, never followed.
    """
    fd, tmp = create_exclusive(path.parent, f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        with contextlib.suppress(OSError):
            fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (POSIX needs the directory synced too)."""
    fd = os.open(path, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_file_atomic(src: Path | bytes, dest: Path) -> Path:
    """Copy ``src`` to ``dest`` (a user's ``-o`` path) the way the cache writes its own files.

    ``src`` may be the bytes themselves: a cache artifact as
    :meth:`~paddleocr_trt.cache.manifest.CacheEntry.read_artifact` read and checked it (the
    bytes copied are the bytes checked; a cache path is never opened again by path).

    ``dest`` may be a symlink (written through, deliberately: the link's target is replaced) but
    its target must be a regular file or absent: a device, FIFO, socket or directory is refused
    with ``IsADirectoryError``/``FileExistsError`` naming it. The copy goes to an exclusive,
    unpredictable temp file beside the target and is renamed over it; it gets the mode a new
    file would get under the umask.
    """
    dest = Path(os.path.abspath(dest.expanduser()))
    target = Path(os.path.realpath(dest))
    with contextlib.suppress(FileNotFoundError):
        st = os.stat(target)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "output path is a directory", str(dest))
        if not stat.S_ISREG(st.st_mode):
            raise FileExistsError(
                f"output path {dest} exists and is not a regular file (a device, FIFO or "
                "socket); refusing to replace it"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    fd, tmp = create_exclusive(target.parent, f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(src, bytes):
                out.write(src)
            else:
                with open(src, "rb") as source:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
            out.flush()
            os.fchmod(out.fileno(), 0o666 & ~umask)
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dest


def check_output_path(dest: Path) -> Path:
    """Refuse, before any work, an output path that cannot be written as a regular file."""
    dest = Path(os.path.abspath(dest.expanduser()))
    target = Path(os.path.realpath(dest))
    if target.exists() and not target.is_file():
        kind = "a directory" if target.is_dir() else "not a regular file (a device, FIFO...)"
        raise OutputPathError(f"output path {dest} is {kind}; give a file name like model.onnx")
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"output path {dest}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"output path {dest}: directory {parent} is not writable")
    return dest


def copy_output(src: Path | bytes, dest: Path) -> Path:
    """:func:`copy_file_atomic` for ``-o``; OutputPathError (one line) when it cannot be done."""
    try:
        return copy_file_atomic(src, dest)
    except OSError as exc:
        raise OutputPathError(f"could not write {dest}: {exc.strerror or exc}") from exc
