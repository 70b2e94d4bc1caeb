"""The one primitive through which the cache touches the file system: directory descriptors.

Every path the cache reads, writes, renames or deletes is reached from the cache root one
component at a time, each opened relative to its parent's descriptor (``openat``) with
``O_NOFOLLOW | O_DIRECTORY``: a symbolic link planted at any level (a kind dir like ``onnx/``, an
entry dir, ``locks/``, ``failures/``) makes the open fail, so it is refused, never followed. Each
directory is checked on its open descriptor (``fstat``): owned by the current user and not
writable by group or others. Files are opened ``O_NOFOLLOW`` and checked the same way, with a
link count of 1 (a hard link planted at a predictable name is refused). Renames and unlinks are
``*at`` calls on descriptors; a tree is deleted through descriptors, never through paths.

Use (a :class:`SafeDir` comes from :meth:`paddleocr_trt.cache.root.CacheRoot.open`)::

    with cache_root.open("runtime-cache", create=True) as d:   # <root>/runtime-cache, 0700
        d.write_bytes("sm89.bin", data)      # atomic: exclusive temp file + rename, 0600
        data = d.read_bytes("sm89.bin")      # only a regular file of ours, nlink 1
        for name in d.names(): ...           # listing through the descriptor
        d.unlink("sm89.bin")                 # only a regular file of ours
        with d.child("sub", create=True) as sub: ...
        d.remove_tree("sub")                 # recursive, through descriptors

Names are single path components (no ``/``, not ``.``/``..``); :class:`UntrustedPathError` (a
:class:`~paddleocr_trt.errors.CacheError`) says what was refused; other OSErrors propagate.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from .safety import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, UntrustedPathError, untrusted_reason

__all__ = ["SafeDir", "check_name"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


def check_name(name: str) -> str:
    """``name`` if it is one plain path component; ValueError otherwise."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"not a plain file name: {name!r}")
    return name


def file_problem(st: os.stat_result) -> str | None:
    """Why a file with this ``fstat`` may not be trusted (adds the link count to ownership)."""
    reason = untrusted_reason(st, want_dir=False)
    if reason is None and st.st_nlink > 1:
        reason = f"has {st.st_nlink} hard links (one may have been planted)"
    return reason


class SafeDir:
    """An open, trusted directory; every operation is relative to its descriptor."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        #: for messages and for handing finished files to readers by path
        self.path = path

    def __repr__(self) -> str:
        return f"SafeDir({str(self.path)!r})"

    def __enter__(self) -> SafeDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open_path(cls, path: Path) -> SafeDir:
        """Open an absolute directory whose final component is not a link, and check it."""
        return cls._open(None, str(path), Path(path))

    @classmethod
    def adopt(cls, fd: int, path: Path) -> SafeDir:
        """A directory descriptor another process walked to and handed over (inherited by a
        child through ``pass_fds``), checked as :meth:`child` checks what it opens: a
        directory, ours, not writable by others. ``path`` names it in messages only; nothing
        is opened by path. The SafeDir owns ``fd`` from now on (closes it)."""
        try:
            reason = untrusted_reason(os.fstat(fd), want_dir=True)
        except OSError as exc:
            raise UntrustedPathError(
                f"{path}: the handed-over descriptor {fd} is unusable ({exc})"
            ) from exc
        if reason is not None:
            os.close(fd)
            raise UntrustedPathError(f"{path} {reason}; the cache refuses to use it")
        return cls(fd, path)

    @classmethod
    def _open(cls, dir_fd: int | None, name: str, path: Path, *, fix_mode: bool = False) -> SafeDir:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                what = "a symbolic link" if exc.errno == errno.ELOOP else "not a directory"
                if dir_fd is not None and exc.errno == errno.ENOTDIR:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else what
                raise UntrustedPathError(f"{path} is {what}; the cache refuses to use it") from None
            raise
        try:
            if fix_mode:
                os.fchmod(fd, PRIVATE_DIR_MODE)  # whatever the umask
            reason = untrusted_reason(os.fstat(fd), want_dir=True)
            if reason is not None:
                raise UntrustedPathError(f"{path} {reason}; the cache refuses to use it")
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path)

    def child(self, name: str, *, create: bool = False) -> SafeDir:
        """The subdirectory ``name`` (created 0700 if ``create`` and missing), checked."""
        check_name(name)
        made = False
        if create:
            try:
                os.mkdir(name, PRIVATE_DIR_MODE, dir_fd=self.fd)
                made = True
            except FileExistsError:
                pass
        return self._open(self.fd, name, self.path / name, fix_mode=made)

    def walk(self, *names: str, create: bool = False) -> SafeDir:
        """``child(a).child(b)...``: a new SafeDir (this one stays open)."""
        current = self._open(self.fd, ".", self.path)
        for name in names:
            try:
                nxt = current.child(name, create=create)
            finally:
                current.close()
            current = nxt
        return current

    def fd_path(self) -> Path:
        """A path to this directory that resolves through its open descriptor, for code that
        takes a path (paddle2onnx, TensorRT builds and checks in child processes):
        ``/proc/<pid>/fd/<fd>``.

        Why: a path through the cache root would be resolved again, component by component, by
        whoever opens it, so a component swapped for a link meanwhile would be followed. The
        magic link names the directory this process holds open, whatever happens to the path.
        ``<pid>``, not ``self``: a child process (same uid, may read our ``/proc``) opens it in
        its own process, where the descriptor is not inherited. Valid while this SafeDir is
        open. Fallback, where ``/proc`` is not mounted or does not lead back to the same
        directory: :attr:`path` (then the dirs on the way, all 0700 and ours, keep others out).
        """
        proc = Path(f"/proc/{os.getpid()}/fd/{self.fd}")
        try:
            via, held = os.stat(proc), os.fstat(self.fd)
        except OSError:
            return self.path
        if (via.st_dev, via.st_ino) != (held.st_dev, held.st_ino):
            return self.path
        return proc

    # -- looking -------------------------------------------------------------------------------

    def lstat(self, name: str) -> os.stat_result | None:
        """``lstat`` of ``name`` in this dir (links not followed), None if absent."""
        try:
            return os.stat(check_name(name), dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def names(self) -> list[str]:
        """Sorted names in this directory (read through the descriptor)."""
        with os.scandir(self.fd) as it:
            return sorted(entry.name for entry in it)

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    # -- files ---------------------------------------------------------------------------------

    def open_file(self, name: str, flags: int = os.O_RDONLY, *, create: bool = False) -> int:
        """A descriptor of ``name``: a regular file of ours, nlink 1; UntrustedPathError if not.

        ``create``: make ``name`` if missing, exclusively (``O_CREAT|O_EXCL``) and 0600 whatever
        the umask, else open the one there (checked like any other). Never ``O_TRUNC``: a file at
        a predictable name may have been planted, and truncating it would destroy its bytes
        before the check could refuse it (a lock file is written in place instead).
        """
        check_name(name)
        if flags & os.O_TRUNC:
            raise ValueError("SafeDir.open_file never truncates (O_TRUNC); write_bytes replaces")
        flags |= os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = -1
            if create:
                exclusive = flags | os.O_CREAT | os.O_EXCL
                with contextlib.suppress(FileExistsError):
                    fd = os.open(name, exclusive, PRIVATE_FILE_MODE, dir_fd=self.fd)
            made = fd >= 0
            if not made:
                fd = os.open(name, flags, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UntrustedPathError(
                    f"{self.path / name} is a symbolic link; the cache refuses to use it"
                ) from None
            raise
        try:
            if made:
                os.fchmod(fd, PRIVATE_FILE_MODE)  # whatever the umask
            reason = file_problem(os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        if reason is not None:
            os.close(fd)
            raise UntrustedPathError(f"{self.path / name} {reason}; the cache refuses to use it")
        return fd

    def read_bytes(self, name: str) -> bytes:
        fd = self.open_file(name)
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def read_json(self, name: str) -> Any:
        """Parsed JSON of a trusted file; ValueError when it is not JSON."""
        return json.loads(self.read_bytes(name).decode("utf-8"))

    def sha256(self, name: str) -> tuple[str, os.stat_result]:
        """(sha256 hex, fstat) of a trusted file, read through one descriptor."""
        fd = self.open_file(name)
        digest = hashlib.sha256()
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest(), st

    def create_temp(self, prefix: str, suffix: str = ".tmp") -> tuple[int, str]:
        """A new 0600 file with an unpredictable name here (O_EXCL|O_NOFOLLOW): (fd, name)."""
        for _ in range(100):
            name = f"{prefix}{os.urandom(8).hex()}{suffix}"
            try:
                fd = os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    PRIVATE_FILE_MODE,
                    dir_fd=self.fd,
                )
            except FileExistsError:
                continue
            os.fchmod(fd, PRIVATE_FILE_MODE)
            return fd, name
        raise FileExistsError(f"could not create a unique temporary file in {self.path}")

    def write_bytes(
        self, name: str, data: bytes, *, durable: bool = True, mode: int = PRIVATE_FILE_MODE
    ) -> None:
        """Replace ``name`` by a new file holding ``data`` (temp + rename: a link at ``name``
        is replaced, never written through; readers see the old or the new file)."""
        check_name(name)
        fd, tmp = self.create_temp(f".{name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fchmod(handle.fileno(), mode)
                if durable:
                    os.fsync(handle.fileno())
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.fd)
            raise
        if durable:
            with contextlib.suppress(OSError):
                os.fsync(self.fd)

    def write_json(self, name: str, data: Any, *, durable: bool = True) -> None:
        text = json.dumps(data, indent=1, sort_keys=True) + "\n"
        self.write_bytes(name, text.encode("utf-8"), durable=durable)

    def fsync(self) -> None:
        os.fsync(self.fd)

    # -- moving and deleting -------------------------------------------------------------------

    def rename(self, name: str, dest: SafeDir, dest_name: str) -> None:
        """``renameat(self/name, dest/dest_name)``: moves a link or dir itself, never its target."""
        os.rename(check_name(name), check_name(dest_name), src_dir_fd=self.fd, dst_dir_fd=dest.fd)

    def unlink(self, name: str) -> bool:
        """Delete ``name`` if it is a regular file of ours (any link count); whether it went."""
        st = self.lstat(name)
        if st is None or untrusted_reason(st, want_dir=False) is not None:
            return False
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            return False
        return True

    def rmdir(self, name: str) -> bool:
        """Remove an empty directory (nothing is lost); whether it went."""
        try:
            os.rmdir(check_name(name), dir_fd=self.fd)
        except OSError:
            return False
        return True

    def remove_tree(self, name: str, *, last: str | None = None) -> bool:
        """Delete the directory ``name`` (a real dir of ours) and all in it, through descriptors.

        Links inside are unlinked, never followed. ``last`` (e.g. the manifest that proves the
        tree is the cache's) is removed after everything else, so an interrupted removal leaves
        the proof behind for the next try. Returns whether ``name`` is gone.
        """
        try:
            sub = self.child(name)
        except (UntrustedPathError, OSError):
            return False
        with sub:
            sub._empty(last)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(name, dir_fd=self.fd)
        return self.lstat(name) is None

    def _empty(self, last: str | None) -> None:
        names = self.names()
        if last in names:
            names.remove(last)
            names.append(last)
        for name in names:
            st = self.lstat(name)
            if st is None:
                continue
            with contextlib.suppress(OSError):
                if stat.S_ISDIR(st.st_mode):
                    self.remove_tree(name)
                else:
                    os.unlink(name, dir_fd=self.fd)

    def tree_size(self) -> int:
        """Bytes of the regular files under this dir (links not followed)."""
        total = 0
        for _root, _dirs, files, dir_fd in os.fwalk(".", dir_fd=self.fd, follow_symlinks=False):
            for name in files:
                with contextlib.suppress(OSError):
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        total += st.st_size
        return total
