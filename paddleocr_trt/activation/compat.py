"""Which PaddleOCR/PaddleX releases the patches were written against.

The hook reaches into PaddleX internals (the Paddle static engine's runner builder) and
PaddleOCR's argument layer; on a release we have not read, patching blind could break the user's
program, so an unknown version gets one warning and no patching at all.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from ..versions import version_of

#: distribution -> (minimum inclusive, maximum exclusive)
SUPPORTED: dict[str, tuple[str, str]] = {
    "paddleocr": ("3.6", "3.8"),
    "paddlex": ("3.6", "3.8"),
}


def installed_versions() -> dict[str, str | None]:
    return {dist: version_of(dist) for dist in SUPPORTED}


def unsupported_reason(versions: dict[str, str | None]) -> str | None:
    """None when every given version is supported; else one sentence naming them all."""
    problems = []
    for dist, (low, high) in SUPPORTED.items():
        if dist not in versions:
            continue
        found = versions[dist]
        if found is None:
            problems.append(f"{dist} is not installed")
            continue
        try:
            ok = Version(low) <= Version(found) < Version(high)
        except InvalidVersion:
            ok = False
        if not ok:
            problems.append(f"{dist} {found} (supported: >={low},<{high})")
    if not problems:
        return None
    return (
        "paddleocr_trt supports "
        + ", ".join(f"{d} >={lo},<{hi}" for d, (lo, hi) in SUPPORTED.items())
        + "; found "
        + "; ".join(problems)
        + ". PaddleOCR is left unpatched and runs natively (use_tensorrt=True has no effect)."
    )
