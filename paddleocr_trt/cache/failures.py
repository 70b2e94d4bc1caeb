"""Remembered failures: a key whose ONNX conversion or engine build failed is not retried.

Without this, every process start redid minutes of conversion/build work only to fall back
again. A failure is stored under the artifact's own cache key, so anything that could change
the outcome (model files, TensorRT version, GPU, precision, builder settings) makes a new key
and a fresh try; ``paddleocr-trt cache clear`` (the digest, or ``--all``) forgets it.

Layout: ``<root>/failures/<kind>-<digest>.json``, 0700/0600, written atomically (temp file +
rename) and read only through the root's descriptors (see safedir.py): a memo is honoured only
when it is a regular file of this user that nobody else can write, of this schema, and its key
hashes to its file name; anything else is dropped with one warning. A failure caused by a signal
from outside (a killed child, e.g. by the OOM killer) or a timeout is not remembered: it may
succeed on the next start.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..log import get_logger
from .key import DIGEST_HEX_CHARS, KINDS, CacheKey
from .root import CacheRoot
from .safety import UntrustedPathError

log = get_logger("cache.failures")

FAILURES_DIR = "failures"
MEMO_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FailureRecord:
    """One remembered failure."""

    digest: str
    kind: str
    key: dict[str, Any]
    reason: str
    error_type: str
    created: float
    attempts: list[dict[str, Any]] = field(default_factory=list)
    package_version: str = ""
    path: Path | None = None
    #: conditions of the failed run that are not in the key (e.g. the build timeout)
    context: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))
        return f"{self.error_type} at {when}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "kind": self.kind,
            "key": self.key,
            "reason": self.reason,
            "error_type": self.error_type,
            "created": self.created,
            "attempts": self.attempts,
            "package_version": self.package_version,
            "path": str(self.path) if self.path else None,
            "context": self.context,
        }


class FailureMemo:
    """The failures remembered in one cache root (a :class:`CacheRoot`, an ``EngineCache``
    or a directory)."""

    def __init__(self, root: Any) -> None:
        if hasattr(root, "fsroot"):
            root = root.fsroot
        self.fsroot: CacheRoot = root if isinstance(root, CacheRoot) else CacheRoot(root)
        self.root = self.fsroot.path
        self.dir = self.root / FAILURES_DIR

    def record(
        self,
        key: CacheKey,
        error: BaseException,
        *,
        attempts: list[dict[str, Any]] | None = None,
        context: dict[str, Any] | None = None,
    ) -> FailureRecord | None:
        """Remember that ``key`` failed with ``error``; a write failure is logged, not raised.

        Not remembered (None) when the failure came from a signal or a timeout."""
        transient = transient_cause(error, attempts or [])
        if transient is not None:
            log.warning(
                "not remembering the failure of %s: %s; it is retried on the next start",
                key.describe(),
                transient,
            )
            return None
        data = {
            "schema_version": MEMO_SCHEMA_VERSION,
            "package_version": __version__,
            "digest": key.digest,
            "kind": key.kind,
            "key": key.to_dict(),
            "reason": str(error)[:4000],
            "error_type": type(error).__name__,
            "created": time.time(),
            "attempts": json.loads(json.dumps(attempts or [], default=str)),
            "context": json.loads(json.dumps(context or {}, default=str)),
        }
        name = _name(key.kind, key.digest)
        try:
            with self.fsroot.open(FAILURES_DIR, create=True) as memo_dir:
                memo_dir.write_json(name, data)
        except (OSError, UntrustedPathError) as exc:
            log.warning(
                "could not remember the failure of %s in %s: %s", key.describe(), self.dir, exc
            )
            return None
        log.warning(
            "remembered this failure in %s: %s is not retried until its inputs change or you "
            "run `paddleocr-trt cache clear %s`",
            self.dir / name,
            key.describe(),
            key.digest[:12],
        )
        return _record(data, self.dir / name)

    def _read_all(self) -> dict[str, dict[str, Any]]:
        """Every valid memo by file name; invalid ones are warned about (once) and skipped."""
        found: dict[str, dict[str, Any]] = {}
        try:
            memo_dir = self.fsroot.open(FAILURES_DIR)
        except FileNotFoundError:
            return found
        except (OSError, UntrustedPathError) as exc:
            _warn_once(str(self.dir), f"ignoring remembered failures in {self.dir}: {exc}")
            return found
        with memo_dir:
            for name in memo_dir.names():
                if not name.endswith(".json") or name.startswith("."):
                    continue
                try:
                    data = memo_dir.read_json(name)
                except (OSError, ValueError, UntrustedPathError) as exc:
                    _warn_once(str(self.dir / name), f"ignoring remembered failure {name}: {exc}")
                    continue
                problem = memo_problem(data, name)
                if problem is not None:
                    _warn_once(
                        str(self.dir / name),
                        f"ignoring remembered failure {self.dir / name}: {problem} (corrupt; "
                        "`paddleocr-trt cache clear --all` removes it)",
                    )
                    continue
                found[name] = data
        return found

    def get(self, key: CacheKey) -> FailureRecord | None:
        """The failure remembered for exactly this key, or None."""
        name = _name(key.kind, key.digest)
        data = self._read_all().get(name)
        if data is None or data.get("key") != key.to_dict():
            return None
        return _record(data, self.dir / name)

    def list(self) -> list[FailureRecord]:
        found = [_record(d, self.dir / n) for n, d in self._read_all().items()]
        return sorted(found, key=lambda r: (r.created, r.digest))

    def _delete(self, names: list[str]) -> list[str]:
        gone: list[str] = []
        if not names:
            return gone
        try:
            memo_dir = self.fsroot.open_marked(FAILURES_DIR)
        except (OSError, UntrustedPathError) as exc:
            log.warning("not removing remembered failures in %s: %s", self.dir, exc)
            return gone
        with memo_dir:
            for name in names:
                if memo_dir.unlink(name):
                    gone.append(name)
        return gone

    def remove(self, digest_prefix: str) -> list[FailureRecord]:
        """Forget the failures whose digest starts with ``digest_prefix``; return them."""
        prefix = digest_prefix.strip().lower()
        if not prefix:
            return []
        chosen = [r for r in self.list() if r.digest.startswith(prefix) and r.path is not None]
        gone = set(self._delete([r.path.name for r in chosen if r.path is not None]))
        return [r for r in chosen if r.path is not None and r.path.name in gone]

    def clear(self) -> int:
        """Forget every memo that proves to be the cache's own (valid ones only: a corrupt memo
        is never honoured; it is removed too when its name and key still match)."""
        names = list(self._read_all())
        with (
            contextlib.suppress(OSError, UntrustedPathError),
            self.fsroot.open(FAILURES_DIR) as memo_dir,
        ):
            for name in memo_dir.names():
                if name not in names and _provably_ours(memo_dir, name):
                    names.append(name)
        return len(self._delete(names))


#: signals that come from outside (OOM killer, kill, Ctrl-C), not from the model
EXTERNAL_SIGNALS = frozenset(
    {signal.SIGKILL.value, signal.SIGTERM.value, signal.SIGINT.value, signal.SIGHUP.value}
)


def transient_cause(error: BaseException, attempts: list[dict[str, Any]]) -> str | None:
    """Why ``error`` may not happen again (a signal from outside, a timeout), or None."""
    if getattr(error, "transient", False):
        return "the child process was killed by a signal or ran past its timeout"
    kind = getattr(error, "kind", None)
    code = getattr(error, "returncode", None)
    if kind == "timeout":
        return "the child process ran past its timeout"
    if isinstance(code, int) and -code in EXTERNAL_SIGNALS:
        return f"the child process was killed by {signal.Signals(-code).name}"
    for attempt in attempts:
        if not isinstance(attempt, dict):
            continue
        if attempt.get("outcome") == "timeout":
            return f"attempt {attempt.get('attempt')} ran past its timeout"
        code = attempt.get("returncode")
        if isinstance(code, int) and -code in EXTERNAL_SIGNALS:
            name = signal.Signals(-code).name
            return f"attempt {attempt.get('attempt')} was killed by {name}"
    return None


_NAME = re.compile(rf"^({'|'.join(KINDS)})-([0-9a-f]{{{DIGEST_HEX_CHARS}}})\.json$")
_warned: set[str] = set()


def _name(kind: str, digest: str) -> str:
    return f"{kind}-{digest}.json"


def _warn_once(what: str, message: str) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning("%s", message)


def _finite(value: Any, low: float, high: float) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and low <= value <= high
    )


def _key_matches(data: dict[str, Any], name: str) -> str | None:
    match = _NAME.match(name)
    if match is None:
        return "its file name is not <kind>-<digest>.json"
    kind, digest = match.groups()
    if data.get("kind") != kind or data.get("digest") != digest:
        return "its kind/digest do not match its file name"
    try:
        if CacheKey.from_dict(data["key"]).digest != digest:
            return "its key does not hash to its digest"
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"its key is invalid ({type(exc).__name__})"
    return None


def memo_problem(data: Any, name: str) -> str | None:
    """What is wrong with a memo read from ``name`` (schema and types); None when valid."""
    if not isinstance(data, dict):
        return "it is not a JSON object"
    if data.get("schema_version") != MEMO_SCHEMA_VERSION:
        return f"its schema version {data.get('schema_version')!r} is not {MEMO_SCHEMA_VERSION}"
    for field_name in ("reason", "error_type", "package_version"):
        if not isinstance(data.get(field_name, ""), str):
            return f"field {field_name!r} is not a string"
    if not _finite(data.get("created"), 0.0, 1e11):
        return f"field 'created' is not a plausible time: {str(data.get('created'))[:40]}"
    attempts = data.get("attempts", [])
    if not isinstance(attempts, list) or not all(isinstance(a, dict) for a in attempts):
        return "field 'attempts' is not a list of objects"
    context = data.get("context", {})
    if not isinstance(context, dict):
        return "field 'context' is not an object"
    timeout = context.get("timeout_s")
    if timeout is not None and not _finite(timeout, 0.0, 1e9):
        return "field 'context.timeout_s' is not a number"
    if not isinstance(context.get("timed_out", False), bool):
        return "field 'context.timed_out' is not true/false"
    return _key_matches(data, name)


def _provably_ours(memo_dir: Any, name: str) -> bool:
    """A corrupt memo is still removable when it is ours and its key matches its name."""
    try:
        data = memo_dir.read_json(name)
    except (OSError, ValueError, UntrustedPathError):
        return False
    return (
        isinstance(data, dict)
        and data.get("schema_version") == MEMO_SCHEMA_VERSION
        and _key_matches(data, name) is None
    )


def _record(data: dict[str, Any], path: Path) -> FailureRecord:
    return FailureRecord(
        digest=str(data["digest"]),
        kind=str(data["kind"]),
        key=dict(data["key"]),
        reason=str(data.get("reason", "")),
        error_type=str(data.get("error_type", "")),
        created=float(data["created"]),
        attempts=list(data.get("attempts") or []),
        package_version=str(data.get("package_version", "")),
        path=path,
        context=dict(data.get("context") or {}),
    )
