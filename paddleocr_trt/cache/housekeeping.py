"""Cleaning up after crashed builders, and removing entries: only what the cache provably made.

Everything here works on directory descriptors (:mod:`.safedir`) under a root the cache marked
(:mod:`.root`), so a link planted at any level is refused, never followed. What counts as proof:

* an entry: a real directory of ours whose ``manifest.json`` (a regular file of ours) is of this
  cache's schema and holds a key that hashes to the directory's name; without that proof an
  entry that must be replaced is moved aside (``tmp/untrusted-...``), never deleted;
* a build dir in ``tmp/``: a directory of ours holding an ``owner.json`` of ours naming a process
  that is gone; one without a readable ``owner.json`` is only ``rmdir``-ed when empty;
* a trash dir in ``tmp/`` (an entry being deleted): the entry's own proof, which is deleted last.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time

from ..log import get_logger
from .fsutil import owner_alive
from .key import DIGEST_HEX_CHARS, KINDS
from .manifest import MANIFEST_NAME, key_proof
from .safedir import SafeDir
from .safety import UntrustedPathError, untrusted_reason

log = get_logger("cache")

OWNER_NAME = "owner.json"
#: a build dir without a readable owner.json younger than this may be just being created
UNOWNED_GRACE_S = 60.0
_HEX = frozenset("0123456789abcdef")


def build_dir_name(kind: str, digest: str) -> str:
    return f"{kind}-{digest}-{os.getpid()}-{os.urandom(4).hex()}"


def trash_dir_name(kind: str, digest: str) -> str:
    return f"trash-{kind}-{digest}-{os.getpid()}-{os.urandom(4).hex()}"


def is_digest(name: str) -> bool:
    return len(name) == DIGEST_HEX_CHARS and set(name) <= _HEX


def entry_proof(kind_dir: SafeDir, digest: str) -> str | None:
    """None if ``kind_dir/digest`` is an entry the cache made (see the module doc), else why
    not ("it does not exist" when absent)."""
    st = kind_dir.lstat(digest)
    if st is None:
        return "it does not exist"
    reason = untrusted_reason(st, want_dir=True)
    if reason is not None:
        return reason
    try:
        with kind_dir.child(digest) as entry:
            manifest = entry.read_json(MANIFEST_NAME)
    except FileNotFoundError:
        return f"it has no {MANIFEST_NAME}, so the cache did not make it"
    except (OSError, ValueError, UntrustedPathError) as exc:
        return f"its {MANIFEST_NAME} is not the cache's ({exc})"
    return key_proof(manifest, digest, kind_dir.path.name)


def entry_names(kind_dir: SafeDir) -> list[str]:
    """Digest-named real directories in a kind dir (candidates; each is checked on use)."""
    found = []
    with contextlib.suppress(OSError):
        for name in kind_dir.names():
            st = kind_dir.lstat(name) if is_digest(name) else None
            if st is not None and stat.S_ISDIR(st.st_mode):
                found.append(name)
    return found


def discard_entry(kind_dir: SafeDir, tmp: SafeDir, digest: str) -> bool:
    """Move one of our entries out of sight atomically (rename into ``tmp``), then delete it
    through descriptors, its manifest last. Returns whether it is gone; something that is not
    provably ours is left alone (warned)."""
    why = entry_proof(kind_dir, digest)
    if why == "it does not exist":
        return False
    if why is not None:
        log.warning(
            "not removing %s: %s (the cache only deletes what it created)",
            kind_dir.path / digest,
            why,
        )
        return False
    trash = trash_dir_name(kind_dir.path.name, digest)
    try:
        kind_dir.rename(digest, tmp, trash)
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("could not remove cache entry %s: %s", kind_dir.path / digest, exc)
        return False
    tmp.remove_tree(trash, last=MANIFEST_NAME)
    return True


def move_aside(kind_dir: SafeDir, tmp: SafeDir, digest: str) -> str | None:
    """Rename a foreign, linked or unprovable entry out of the way (never deleting it)."""
    aside = f"untrusted-{kind_dir.path.name}-{digest}-{os.urandom(4).hex()}"
    try:
        kind_dir.rename(digest, tmp, aside)
    except FileNotFoundError:
        return None
    log.warning(
        "moved %s, which the cache does not trust, to %s (not deleted: it is not provably the "
        "cache's own); remove it yourself when you have checked it",
        kind_dir.path / digest,
        tmp.path / aside,
    )
    return aside


def _build_dir_stale(tmp: SafeDir, name: str, st: os.stat_result, stale_s: float) -> bool:
    try:
        with tmp.child(name) as build:
            owner = build.read_json(OWNER_NAME)
    except (OSError, ValueError, UntrustedPathError):
        return False
    alive = owner_alive(owner) if isinstance(owner, dict) else False
    return alive is False or (alive is None and time.time() - st.st_mtime > stale_s)


def _trash_proof(tmp: SafeDir, name: str) -> bool:
    parts = name.split("-")
    if len(parts) != 5 or parts[1] not in KINDS or not is_digest(parts[2]):
        return False
    try:
        with tmp.child(name) as trash:
            manifest = trash.read_json(MANIFEST_NAME)
    except (OSError, ValueError, UntrustedPathError):
        return False
    return key_proof(manifest, parts[2], parts[1]) is None


def clean_temp(tmp: SafeDir, stale_temp_s: float) -> int:
    """Remove leftovers of crashed or killed builders in ``tmp/`` (see module doc); how many."""
    removed = 0
    now = time.time()
    try:
        names = tmp.names()
    except OSError as exc:
        log.warning("not cleaning %s: %s", tmp.path, exc)
        return 0
    for name in names:
        st = tmp.lstat(name)
        if st is None or untrusted_reason(st, want_dir=True) is not None:
            continue
        if name.startswith("trash-"):
            if _trash_proof(tmp, name):
                removed += tmp.remove_tree(name, last=MANIFEST_NAME)
            continue
        if name.startswith("untrusted-"):
            continue  # moved aside: never deleted
        if _build_dir_stale(tmp, name, st, stale_temp_s):
            log.info("removing leftover temporary cache dir %s", tmp.path / name)
            removed += tmp.remove_tree(name, last=OWNER_NAME)
        elif now - st.st_mtime > UNOWNED_GRACE_S:
            with contextlib.suppress(OSError, UntrustedPathError), tmp.child(name) as build:
                for stray in build.names():  # a half-written owner.json of ours
                    if stray.startswith(f".{OWNER_NAME}."):
                        build.unlink(stray)
            removed += tmp.rmdir(name)  # only if empty: nothing is lost
    return removed


def clean_stray_manifests(kind_dir: SafeDir, digest: str) -> None:
    """Half-written manifest updates (``.manifest.json.<random>.tmp``) in one proven entry."""
    if entry_proof(kind_dir, digest) is not None:
        return
    now = time.time()
    with contextlib.suppress(OSError, UntrustedPathError), kind_dir.child(digest) as entry:
        for name in entry.names():
            if name.startswith(f".{MANIFEST_NAME}.") and name.endswith(".tmp"):
                st = entry.lstat(name)
                if st is not None and now - st.st_mtime > UNOWNED_GRACE_S:
                    entry.unlink(name)
