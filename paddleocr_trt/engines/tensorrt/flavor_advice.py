"""Which TensorRT flavor fits this GPU and driver, and the line that installs it (``doctor``).

Full TensorRT (``[tensorrt]``) runs on every recent NVIDIA GPU but its libraries come from
NVIDIA's index; TensorRT-RTX (``[tensorrt-rtx]``) installs from PyPI alone and runs on RTX-class
GPUs only (compute capability 8.0/8.6/8.9/12.x with "RTX" in the name: GeForce RTX 30/40/50,
RTX workstation cards). Datacenter GPUs (H100/H200, A100, L4, T4) get full TensorRT: TensorRT-RTX
refuses 9.0 outright, and NVIDIA targets it at RTX products. The CUDA 13 builds need an R580+
driver (driver CUDA 13); older drivers get the ``-cu12`` extras.
"""

from __future__ import annotations

from typing import Any

from .flavors import FULL, INSTALL, INSTALL_CU12, LABELS, RTX, rtx_runs_on


def _cuda_major(driver_cuda: Any) -> int | None:
    try:
        return int(str(driver_cuda).split(".")[0])
    except (TypeError, ValueError):
        return None


def flavor_advice(cuda: dict[str, Any], builds: dict[str, Any]) -> dict[str, Any]:
    """{flavor, why, install} for the first GPU (or for a machine without one)."""
    driver_major = _cuda_major(builds.get("driver_cuda"))
    install = INSTALL_CU12 if driver_major is not None and driver_major < 13 else INSTALL
    devices = cuda.get("devices") or []
    if not devices:
        return {
            "flavor": RTX,
            "why": "no usable GPU here: TensorRT-RTX still builds engines ahead of time "
            "(paddleocr-trt optimize MODEL_DIR --engine tensorrt-rtx --target sm86,sm89,sm120); "
            "they are validated on the target GPU at first use",
            "install": INSTALL[RTX],
        }
    dev = devices[0]
    cc = tuple(int(x) for x in str(dev["compute_capability"]).split("."))
    name = str(dev.get("name", ""))
    if rtx_runs_on(cc) and "RTX" in name.upper():  # type: ignore[arg-type]
        flavor = RTX
        why = f"{name} (compute capability {dev['compute_capability']}) is an RTX GPU"
    else:
        flavor = FULL
        why = f"{name} (compute capability {dev['compute_capability']}) "
        why += (
            "is not an RTX-class GPU TensorRT-RTX runs on"
            if not rtx_runs_on(cc)  # type: ignore[arg-type]
            else "is a datacenter GPU: full TensorRT is NVIDIA's engine for it"
        )
    if driver_major is not None:
        why += f"; driver CUDA {builds.get('driver_cuda')}"
    return {"flavor": flavor, "label": LABELS[flavor], "why": why, "install": install[flavor]}
