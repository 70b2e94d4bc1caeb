"""Does the installed TensorRT / cuda-python build match the CUDA version the driver supports?

``pip install tensorrt`` and ``cuda-python`` resolve to their CUDA 13 builds, which need an R580+
driver; on an older driver nothing loads and every model silently falls back to Paddle. So
``doctor`` reads the driver's CUDA version (cuda-python, else libcuda via ctypes, else
nvidia-smi), the CUDA major of the installed TensorRT and cuda-python/cuda-bindings builds (from
their distribution metadata), and prints the exact install line when they do not fit.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

#: CUDA majors with a paddleocr-trt extra (pyproject ``tensorrt-cu12`` / ``tensorrt-cu13``)
EXTRA_MAJORS = (12, 13)
#: the driver branch each CUDA major first shipped with (for the messages)
MIN_DRIVER = {12: "R525", 13: "R580"}
_TRT_DIST = re.compile(r"^tensorrt[-_]cu(\d+)(?:[-_](?:bindings|libs))?$")
_CUDA_DISTS = ("cuda-bindings", "cuda-python")


@dataclass(frozen=True)
class CudaBuild:
    """One installed distribution and the CUDA major it was built for."""

    distribution: str
    version: str
    cuda_major: int | None


@dataclass
class CudaCheck:
    driver: tuple[int, int] | None
    driver_source: str | None
    tensorrt: CudaBuild | None
    cuda_python: CudaBuild | None
    ok: bool
    problems: list[str] = field(default_factory=list)
    install: str | None = None

    def to_dict(self) -> dict[str, Any]:
        def build(b: CudaBuild | None) -> dict[str, Any] | None:
            return None if b is None else b.__dict__.copy()

        return {
            "driver_cuda": None if self.driver is None else ".".join(map(str, self.driver)),
            "driver_source": self.driver_source,
            "tensorrt": build(self.tensorrt),
            "cuda_python": build(self.cuda_python),
            "ok": self.ok,
            "problems": self.problems,
            "install": self.install,
        }


def parse_driver_version(value: int) -> tuple[int, int]:
    """``cuDriverGetVersion``'s integer (12040) -> (12, 4)."""
    return value // 1000, (value % 1000) // 10


# -- what is installed ----------------------------------------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _tensorrt_major(dist: metadata.Distribution) -> int | None:
    name = _norm(dist.metadata["Name"] or "")
    match = _TRT_DIST.match(name)
    if match:
        return int(match.group(1))
    if name == "tensorrt":  # the meta package: it requires tensorrt_cuNN==<same version>
        for req in dist.requires or []:
            found = re.match(r"\s*tensorrt[-_]cu(\d+)", req)
            if found:
                return int(found.group(1))
    return None


def installed_builds(
    path: list[str] | None = None,
) -> tuple[CudaBuild | None, CudaBuild | None]:
    """(TensorRT build, cuda-python/cuda-bindings build) installed on ``path`` (sys.path)."""
    dists = list(
        metadata.distributions(path=path) if path is not None else metadata.distributions()
    )
    return _tensorrt_build(dists), _cuda_python_build(dists)


def _tensorrt_build(dists: Iterable[metadata.Distribution]) -> CudaBuild | None:
    best: CudaBuild | None = None
    for dist in dists:
        name = _norm(dist.metadata["Name"] or "")
        if name != "tensorrt" and not _TRT_DIST.match(name):
            continue
        build = CudaBuild(name, dist.version, _tensorrt_major(dist))
        # the bindings are what `import tensorrt` loads: prefer them over libs/meta packages
        if best is None or name.endswith("-bindings") or best.cuda_major is None:
            best = build
    return best


def _cuda_python_build(dists: Iterable[metadata.Distribution]) -> CudaBuild | None:
    found = {_norm(d.metadata["Name"] or ""): d for d in dists}
    for name in _CUDA_DISTS:  # cuda-bindings carries the compiled module since 12.6
        if name in found:
            version = found[name].version
            major = re.match(r"(\d+)", version)
            return CudaBuild(name, version, int(major.group(1)) if major else None)
    return None


# -- what the driver supports ---------------------------------------------------------------------


def driver_cuda_version() -> tuple[tuple[int, int] | None, str | None]:
    """(major, minor) of the CUDA version the driver supports, and how it was found."""
    for probe in (_via_cuda_python, _via_libcuda, _via_nvidia_smi):
        try:
            found = probe()
        except Exception:  # a broken probe is just "not found this way"
            found = None
        if found is not None:
            return found
    return None, None


def _via_cuda_python() -> tuple[tuple[int, int], str] | None:
    from ..backend.cuda.runtime import cudart

    err, value = cudart().cudaDriverGetVersion()
    if int(err) != 0 or not value:
        return None
    return parse_driver_version(int(value)), "cudaDriverGetVersion (cuda-python)"


def _via_libcuda() -> tuple[tuple[int, int], str] | None:
    lib = ctypes.CDLL("libcuda.so.1")
    value = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(value)) != 0 or not value.value:
        return None
    return parse_driver_version(value.value), "cuDriverGetVersion (libcuda.so.1)"


def _via_nvidia_smi() -> tuple[tuple[int, int], str] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    out = subprocess.run([exe], capture_output=True, text=True, timeout=20).stdout
    match = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", out)
    if not match:
        return None
    return (int(match.group(1)), int(match.group(2))), "nvidia-smi"


# -- the comparison -------------------------------------------------------------------------------


def install_line(cuda_major: int, *, replace: Iterable[str] = ()) -> str:
    line = f"pip install 'paddleocr-trt[tensorrt-cu{cuda_major}]'"
    remove = sorted(set(replace))
    return f"pip uninstall -y {' '.join(remove)} && {line}" if remove else line


def compare_builds(
    driver: tuple[int, int] | None,
    tensorrt: CudaBuild | None,
    cuda_python: CudaBuild | None,
    *,
    driver_source: str | None = None,
) -> CudaCheck:
    """Plain-value comparison: which installed build needs a newer driver, and the fix."""
    check = CudaCheck(driver, driver_source, tensorrt, cuda_python, ok=True)
    if driver is None:
        check.problems.append(
            "no NVIDIA driver found (cuda-python, libcuda.so.1 and nvidia-smi all failed)"
        )
        check.ok = False
        return check
    major = driver[0]
    supported = [m for m in EXTRA_MAJORS if m <= major]
    if not supported:
        check.problems.append(
            f"the driver supports CUDA {driver[0]}.{driver[1]}; TensorRT 10/11 need CUDA 12 "
            f"(driver {MIN_DRIVER[12]} or newer): update the NVIDIA driver"
        )
        check.ok = False
        return check
    target = max(supported)
    wrong: list[str] = []
    for label, build in (("TensorRT", tensorrt), ("cuda-python", cuda_python)):
        if build is None:
            check.problems.append(f"{label} is not installed")
            continue
        if build.cuda_major is None:
            continue
        if build.cuda_major > major:
            check.problems.append(
                f"{label} {build.version} ({build.distribution}) is built for CUDA "
                f"{build.cuda_major}, which needs driver {MIN_DRIVER.get(build.cuda_major, '?')}+;"
                f" this driver supports CUDA {driver[0]}.{driver[1]}"
            )
            wrong.append(build.distribution)
    if (
        tensorrt is not None
        and cuda_python is not None
        and None not in (tensorrt.cuda_major, cuda_python.cuda_major)
        and tensorrt.cuda_major != cuda_python.cuda_major
    ):
        check.problems.append(
            f"TensorRT is built for CUDA {tensorrt.cuda_major} but {cuda_python.distribution} "
            f"for CUDA {cuda_python.cuda_major}; install matching builds"
        )
        wrong += [tensorrt.distribution, cuda_python.distribution]
    if check.problems:
        check.ok = False
        replace: set[str] = set()
        if wrong:  # remove every variant that pip would otherwise keep
            replace = {"tensorrt", f"tensorrt-cu{_other(target)}", "cuda-python", "cuda-bindings"}
            replace |= {f"tensorrt-cu{_other(target)}-{p}" for p in ("bindings", "libs")}
        check.install = install_line(target, replace=replace)
    return check


def _other(major: int) -> int:
    return 13 if major == 12 else 12


def check_installation() -> CudaCheck:
    """The real check for ``doctor``: this machine's driver against this environment."""
    driver, source = driver_cuda_version()
    tensorrt, cuda_python = installed_builds()
    return compare_builds(driver, tensorrt, cuda_python, driver_source=source)
