"""Cleaning up after crashed builders, and removing entries: only what the cache provably made.

The cache directory may be ``~`` by mistake, or shared, so "old and unknown" is never a reason to
delete. A temp dir is removed only if its name has the exact shape the cache gives its own
(``<kind>-<digest>-<pid>-<random>`` / ``trash-...``), it is a real directory (not a link)
owned by the current user, inside a ``tmp/`` that is itself the cache's own, and (for a build
dir) its recorded owner process is gone. An entry is removed only if it is a real directory
owned by the current user that holds the cache's own ``manifest.json``; one owned by someone
else is moved aside (``tmp/untrusted-...``) when it must be replaced, and never deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from pathlib import Path

from ..log import get_logger
from .fsutil import owner_alive
from .key import DIGEST_HEX_CHARS, KINDS
from .manifest import MANIFEST_NAME
from .safety import (
    UntrustedPathError,
    check_trusted,
    read_trusted_bytes,
    remove_own_tree,
    untrusted_reason,
)

log = get_logger("cache")

OWNER_NAME = "owner.json"
#: a build dir without a readable owner.json younger than this may be just being created
UNOWNED_GRACE_S = 60.0
_KIND = "|".join(KINDS)
_DIGEST = f"[0-9a-f]{{{DIGEST_HEX_CHARS}}}"
BUILD_DIR_RE = re.compile(rf"^(?:{_KIND})-{_DIGEST}-\d+-[0-9a-f]{{8}}$")
TRASH_DIR_RE = re.compile(rf"^trash-{_DIGEST}-\d+-[0-9a-f]{{8}}$")
ENTRY_NAME_RE = re.compile(rf"^{_DIGEST}$")
STRAY_MANIFEST_TMP_RE = re.compile(rf"^\.{re.escape(MANIFEST_NAME)}\.[0-9a-f]{{16}}\.tmp$")


def build_dir_name(kind: str, digest: str) -> str:
    return f"{kind}-{digest}-{os.getpid()}-{os.urandom(4).hex()}"


def trash_dir_name(digest: str) -> str:
    return f"trash-{digest}-{os.getpid()}-{os.urandom(4).hex()}"


def _own_dir(path: Path) -> os.stat_result | None:
    """lstat of a real directory owned by us, else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return None
    return st


def clean_temp(root: Path, tmp_dir: Path, stale_temp_s: float, *, strays: bool = True) -> int:
    """Remove temp dirs left by crashed or killed builders; return how many.

    ``strays`` also looks into every entry for a half-written manifest update (a listing per
    entry: done when building or clearing, not on every cache hit).
    """
    try:
        check_trusted(tmp_dir, want_dir=True)
        children = list(tmp_dir.iterdir())
    except FileNotFoundError:
        return 0
    except (UntrustedPathError, OSError) as exc:
        log.warning("not cleaning %s: %s", tmp_dir, exc)
        return 0
    removed = 0
    now = time.time()
    for child in children:
        trash = TRASH_DIR_RE.match(child.name) is not None
        if not trash and BUILD_DIR_RE.match(child.name) is None:
            continue  # not a name the cache gives: not provably ours
        st = _own_dir(child)
        if st is None:
            continue
        stale = trash
        if not trash:
            try:
                owner = json.loads(read_trusted_bytes(child / OWNER_NAME).decode("utf-8"))
                alive = owner_alive(owner) if isinstance(owner, dict) else False
                stale = alive is False or (alive is None and now - st.st_mtime > stale_temp_s)
            except (OSError, ValueError, UntrustedPathError):
                stale = now - st.st_mtime > UNOWNED_GRACE_S
        if stale:
            log.info("removing leftover temporary cache dir %s", child)
            removed += remove_own_tree(child)
    for kind in KINDS if strays else ():
        for entry in entry_dirs(root, kind):
            with contextlib.suppress(OSError):
                for stray in entry.iterdir():
                    if STRAY_MANIFEST_TMP_RE.match(stray.name) is None:
                        continue
                    st = os.lstat(stray)
                    if (
                        stat.S_ISREG(st.st_mode)
                        and st.st_uid == os.geteuid()
                        and now - st.st_mtime > UNOWNED_GRACE_S
                    ):
                        stray.unlink()
    return removed


def entry_dirs(root: Path, kind: str) -> list[Path]:
    """Entry dirs of one kind: digest-named real directories in a trusted kind dir."""
    kind_dir = root / kind
    try:
        reason = untrusted_reason(os.lstat(kind_dir), want_dir=True)
    except OSError:
        return []
    if reason is not None:
        log.warning("ignoring %s: it %s", kind_dir, reason)
        return []
    found = []
    with contextlib.suppress(OSError):
        for path in kind_dir.iterdir():
            if ENTRY_NAME_RE.match(path.name) and stat.S_ISDIR(os.lstat(path).st_mode):
                found.append(path)
    return sorted(found)


def provably_ours(entry_dir: Path) -> str | None:
    """None if ``entry_dir`` is an entry the cache made (ours, with our manifest), else why not."""
    try:
        st = os.lstat(entry_dir)
    except FileNotFoundError:
        return "it does not exist"
    reason = untrusted_reason(st, want_dir=True)
    if reason is None:
        try:
            mst = os.lstat(entry_dir / MANIFEST_NAME)
        except FileNotFoundError:
            return f"it has no {MANIFEST_NAME}, so the cache did not make it"
        reason = untrusted_reason(mst, want_dir=False)
        if reason is not None:
            reason = f"its {MANIFEST_NAME} {reason}"
    return reason


def discard_entry(tmp_dir: Path, entry_dir: Path) -> bool:
    """Move one of our entries out of sight atomically, then delete it.

    Returns whether it is gone; something that is not provably ours is left alone (warned).
    """
    why = provably_ours(entry_dir)
    if why == "it does not exist":
        return False
    if why is not None:
        log.warning("not removing %s: %s (the cache only deletes what it created)", entry_dir, why)
        return False
    trash = tmp_dir / trash_dir_name(entry_dir.name)
    try:
        os.rename(entry_dir, trash)
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("could not remove cache entry %s: %s", entry_dir, exc)
        return False
    remove_own_tree(trash)
    return True


def move_aside(tmp_dir: Path, entry_dir: Path) -> Path | None:
    """Rename a foreign or linked entry out of the way (never deleting it); the new path."""
    aside = tmp_dir / f"untrusted-{entry_dir.parent.name}-{entry_dir.name}-{os.urandom(4).hex()}"
    try:
        os.rename(entry_dir, aside)
    except FileNotFoundError:
        return None
    log.warning(
        "moved %s, which the cache does not trust, to %s (not deleted: it is not the cache's "
        "own); remove it yourself when you have checked it",
        entry_dir,
        aside,
    )
    return aside
