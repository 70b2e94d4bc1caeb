"""The cache root: which directory the cache may treat as its own, and its ``CACHEDIR.TAG``.

A cache dir may be ``~`` by mistake, a populated project dir, or a shared ``1777`` dir. The cache
only deletes under a root it *marked* (``CACHEDIR.TAG``, the standard cache-directory tag, written
by this user when the cache created its layout there), and the root it uses is decided from what
is on disk, the same way for every command (drop-in, ``convert``, ``cache clear``...):

* missing, empty, or already marked by this user: used as it is (marked when first written);
* a layout of an older paddleocr_trt (mode 0700, ours, only names the cache uses): adopted;
* populated with anything else (``$HOME``, a project dir): the subdirectory
  ``paddleocr_trt_cache/`` inside it, under the same rules (refused if that is not usable);
* writable by others with the sticky bit (a shared ``1777`` dir): the per-user subdirectory
  ``paddleocr_trt_cache-<uid>/``, under the same rules (another user cannot plant it: a link or
  a dir not ours there is refused, never followed);
* anything else (owned by another user, writable by others without the sticky bit, a file, a
  link owned by someone else): refused with a message saying why.

:meth:`CacheRoot.open` gives a :class:`~paddleocr_trt.cache.safedir.SafeDir` for the root or a
path below it; everything the cache touches goes through it.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from ..log import get_logger
from .safedir import SafeDir
from .safety import PRIVATE_DIR_MODE, UntrustedPathError, untrusted_reason

log = get_logger("cache")

TAG_NAME = "CACHEDIR.TAG"
TAG_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
TAG_TEXT = (
    TAG_SIGNATURE + b"\n# This file is a cache directory tag created by paddleocr_trt.\n"
    b"# For information about cache directory tags, see https://bford.info/cachedir/\n"
)
SUBDIR = "paddleocr_trt_cache"
#: every name the cache (any version) creates directly under its root
LAYOUT_NAMES = frozenset(
    {
        TAG_NAME,
        "onnx",
        "engine",
        "onnxruntime",
        "locks",
        "tmp",
        "failures",
        "hash-index.json",
        "validation-images",
        "timing",
        "demo",
        "models",
        "selftest",
    }
)
_TEMP_NAME = re.compile(r"^\.[\w.-]+\.[0-9a-f]{16}\.tmp$")
_warned: set[str] = set()


class CacheRootError(UntrustedPathError):
    """The cache dir cannot be used as (or hold) a cache root; the message says why."""


def _state(path: Path) -> tuple[str, str | None]:
    """(state, problem) of a candidate root: absent, marked, empty, legacy, foreign, shared,
    refused (problem says why)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent", None
    except OSError as exc:
        return "refused", f"cannot be read ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "refused", "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "refused", "is not a directory"
    reason = untrusted_reason(st, want_dir=True)
    if reason is not None:
        shared = st.st_mode & stat.S_ISVTX and st.st_mode & stat.S_IWOTH
        return ("shared", None) if shared else ("refused", reason)
    try:
        names = os.listdir(path)
    except OSError as exc:
        return "refused", f"cannot be listed ({exc.strerror})"
    if TAG_NAME in names and _is_our_tag(path):
        return "marked", None
    if not names:
        return "empty", None
    if stat.S_IMODE(st.st_mode) == PRIVATE_DIR_MODE and all(
        n in LAYOUT_NAMES or _TEMP_NAME.match(n) for n in names
    ):
        return "legacy", None
    return "foreign", None


def _is_our_tag(root: Path) -> bool:
    try:
        with SafeDir.open_path(root) as d:
            return d.read_bytes(TAG_NAME).startswith(TAG_SIGNATURE)
    except (OSError, UntrustedPathError):
        return False


def resolve_root(requested: Path) -> tuple[Path, str | None]:
    """(root to use, problem or None) for a requested cache dir; reads, never writes."""
    requested = Path(os.path.abspath(requested.expanduser()))
    with_link = requested
    try:
        if stat.S_ISLNK(os.lstat(requested).st_mode):
            # a link the user made (~/.cache -> /data/cache) is configuration; one planted by
            # someone else is not
            if os.lstat(requested).st_uid not in (os.geteuid(), 0):
                return requested, f"cache directory {requested} is a symbolic link of another user"
            requested = Path(os.path.realpath(requested))
    except OSError:
        pass
    state, problem = _state(requested)
    if state in ("absent", "marked", "empty", "legacy"):
        return requested, None
    if state == "refused":
        return requested, f"cache directory {with_link} {problem}; the cache refuses to use it"
    sub = requested / (SUBDIR if state == "foreign" else f"{SUBDIR}-{os.geteuid()}")
    sub_state, sub_problem = _state(sub)
    if sub_state in ("absent", "marked", "empty"):
        if str(requested) not in _warned:
            _warned.add(str(requested))
            why = (
                "holds files the cache did not make"
                if state == "foreign"
                else "is shared with other users"
            )
            log.info("cache directory %s %s; using %s", with_link, why, sub)
        return sub, None
    detail = sub_problem or "is not a cache directory of paddleocr_trt"
    return sub, (
        f"cache directory {with_link} "
        + ("holds files the cache did not make" if state == "foreign" else "is shared")
        + f", and {sub} {detail}; give the cache a directory of its own "
        "(--cache-dir or PADDLEOCR_TRT_CACHE_DIR)"
    )


class CacheRoot:
    """A resolved cache root; :meth:`open` is the only way in."""

    def __init__(self, requested: str | Path) -> None:
        self.requested = Path(os.path.abspath(Path(requested).expanduser()))
        self.path, self.problem = resolve_root(self.requested)

    def __repr__(self) -> str:
        return f"CacheRoot({str(self.path)!r})"

    def _check(self) -> None:
        if self.problem is not None:
            raise CacheRootError(self.problem)

    def exists(self) -> bool:
        self._check()
        return os.path.lexists(self.path)

    def open(self, *names: str, create: bool = False) -> SafeDir:
        """The root (or ``root/names...``) as a SafeDir; ``create`` makes missing dirs 0700 and
        marks the root. FileNotFoundError if missing and not ``create``."""
        self._check()
        if create:
            self._create()
        root = SafeDir.open_path(self.path)
        if not names:
            return root
        with root:
            return root.walk(*names, create=create)

    def _create(self) -> None:
        missing = []
        path = self.path
        while not os.path.lexists(path):
            missing.append(path)
            path = path.parent
        for path in reversed(missing):  # parents too: 0700 whatever the umask
            try:
                os.mkdir(path, PRIVATE_DIR_MODE)
                os.chmod(path, PRIVATE_DIR_MODE, follow_symlinks=False)
            except FileExistsError:
                pass
        if not self.marked():
            state, problem = _state(self.path)
            if state not in ("empty", "legacy", "absent"):
                raise CacheRootError(
                    f"cache directory {self.path} {problem or 'is not empty'}; not marking it"
                )
            with SafeDir.open_path(self.path) as root:
                root.write_bytes(TAG_NAME, TAG_TEXT)

    def marked(self) -> bool:
        """Whether the root carries our CACHEDIR.TAG (owned by us, a regular file)."""
        return self.problem is None and _is_our_tag(self.path)

    def open_marked(self, *names: str) -> SafeDir:
        """Like :meth:`open` without create, for deleting: CacheRootError unless the root is
        marked (a legacy layout is marked now); FileNotFoundError if the root is missing."""
        self._check()
        if not self.marked():
            state, _ = _state(self.path)
            if state == "absent":
                raise FileNotFoundError(str(self.path))
            if state != "legacy":
                raise CacheRootError(
                    f"not deleting anything under {self.path}: it carries no {TAG_NAME} of "
                    "paddleocr_trt, so the cache did not make it"
                )
            with SafeDir.open_path(self.path) as root:
                root.write_bytes(TAG_NAME, TAG_TEXT)
        return self.open(*names)
