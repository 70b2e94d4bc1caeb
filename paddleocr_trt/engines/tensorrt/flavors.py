"""The two TensorRT engine flavors and where each one runs (pure data, no TensorRT import).

Full TensorRT (10.x/11.x) builds on and for the GPU at hand, any recent NVIDIA GPU. TensorRT for
RTX (TensorRT-RTX, PyPI ``tensorrt-rtx``) has TensorRT 11's Python API, builds ahead of time
without a GPU for chosen compute capabilities, specialises kernels on the GPU when a context is
made, and runs only on consumer/workstation architectures: Ampere 8.0/8.6, Ada 8.9, Blackwell
12.x (its runtime refuses 9.0, seen on an H200). Which Python module provides a flavor is the
adapter's business (``adapter.api``); this module only names the flavors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

FULL = "tensorrt"
RTX = "tensorrt-rtx"
FLAVORS = (FULL, RTX)
LABELS = {FULL: "TensorRT", RTX: "TensorRT-RTX"}

#: compute capabilities TensorRT-RTX builds for (its ``ComputeCapability`` enum, 1.7) ...
RTX_BUILD_TARGETS = ("sm75", "sm80", "sm86", "sm89", "sm120", "sm121")
#: ... and the ones its runtime ran on ("Supported compute capabilities: 8.0 8.6 8.9 12.0 12.1
#: >12.0", the message of an H200 refusing a plan). Newer than 12.1 is accepted.
RTX_RUN_CCS = ((8, 0), (8, 6), (8, 9), (12, 0), (12, 1))
#: targets of an RTX build when none are given: every architecture its runtime runs
DEFAULT_RTX_TARGETS = ("sm80", "sm86", "sm89", "sm120")

INSTALL = {
    FULL: "pip install 'paddleocr-trt[tensorrt]'",
    RTX: "pip install 'paddleocr-trt[tensorrt-rtx]'",
}
#: CUDA 12 drivers (below R580) need the cu12 builds
INSTALL_CU12 = {
    FULL: "pip install 'paddleocr-trt[tensorrt-cu12]'",
    RTX: "pip install 'paddleocr-trt[tensorrt-rtx-cu12]'",
}
#: GPU families known to be on the wrong side of TensorRT-RTX's line, for the messages
DATACENTER_NAMES = {(9, 0): "H100/H200", (10, 0): "B200", (7, 0): "V100", (8, 7): "Jetson Orin"}


def rtx_runs_on(cc: tuple[int, int]) -> bool:
    """Whether TensorRT-RTX's runtime runs on compute capability ``cc``."""
    return tuple(cc) in RTX_RUN_CCS or tuple(cc) > RTX_RUN_CCS[-1]


def cc_target(cc: tuple[int, int]) -> str:
    """``(8, 9)`` -> ``"sm89"``."""
    return f"sm{int(cc[0])}{int(cc[1])}"


def parse_targets(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"sm86,sm89"`` / ``"8.6, 89"`` / a list -> sorted unique ``smNN`` names; ValueError
    names the accepted ones."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: set[str] = set()
    for item in items:
        raw = str(item).strip().lower()
        if not raw:
            continue
        digits = raw.removeprefix("sm").replace(".", "")
        name = f"sm{digits}"
        if name not in RTX_BUILD_TARGETS:
            raise ValueError(
                f"unknown compute capability target {str(item).strip()!r}; TensorRT-RTX builds "
                f"for {', '.join(RTX_BUILD_TARGETS)}"
            )
        out.add(name)
    if not out:
        raise ValueError(f"no target given; use some of {', '.join(RTX_BUILD_TARGETS)}")
    return tuple(sorted(out, key=lambda t: int(t[2:])))


def covers(targets: Sequence[str], cc: tuple[int, int]) -> bool:
    """Whether a plan built for ``targets`` may run on ``cc`` (empty: the builder's GPU)."""
    return not targets or cc_target(cc) in targets


def rtx_refusal(cc: tuple[int, int]) -> str:
    """The one-line reason TensorRT-RTX cannot run on ``cc``, with the way out."""
    major, minor = int(cc[0]), int(cc[1])
    family = DATACENTER_NAMES.get((major, minor))
    where = f" ({family})" if family else ""
    return (
        f"TensorRT-RTX does not run on compute capability {major}.{minor}{where}: "
        "install TensorRT 10.x/11.x"
    )
