"""Real TensorRT Python bindings, importable on a machine without TensorRT or a GPU.

The bindings wheels from PyPI (``tensorrt-cu12-bindings`` for 10.x, ``tensorrt-cu13-bindings``
for 11.x) hold ``tensorrt_bindings/tensorrt.so``, which links against libnvinfer,
libnvonnxparser and libnvinfer_plugin. Tiny stub libraries with those sonames that define the
nine C entry points the module imports (returning NULL/0) let ``import tensorrt`` succeed: every
class, enum and pybind11 signature is the real one; constructing a Builder or Runtime raises
TypeError (the factory returned nullptr). Both wheels ship the same module path, so each version
is unpacked into its own folder and imported in its own subprocess.

Also a CLI: ``python tests/trt_api/bindings_env.py`` fetches and prepares both versions
(``scripts/fetch_trt_bindings.sh`` calls it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ENV = "PADDLEOCR_TRT_BINDINGS_CACHE"

#: major -> (PyPI project, pinned version)
BINDINGS = {
    10: ("tensorrt-cu12-bindings", "10.16.1.11"),
    11: ("tensorrt-cu13-bindings", "11.4.0.106"),
}
STUB_LIBS = ("libnvinfer", "libnvonnxparser", "libnvinfer_plugin")
#: The C symbols tensorrt.so needs from the three libraries (``nm -D --undefined-only``).
STUB_SYMBOLS = (
    "createInferBuilder_INTERNAL",
    "createInferRefitter_INTERNAL",
    "createInferRuntime_INTERNAL",
    "createNvOnnxParser_INTERNAL",
    "createNvOnnxParserRefitter_INTERNAL",
    "getBuilderPluginRegistry",
    "getNvOnnxParserVersion",
    "getPluginRegistry",
    "initLibNvInferPlugins",
)


class BindingsUnavailable(RuntimeError):
    """The bindings could not be fetched or prepared; the message says what to fix."""


@dataclass(frozen=True)
class BindingsEnv:
    major: int
    version: str
    python_dir: Path  # holds tensorrt/ (the renamed tensorrt_bindings package)
    lib_dir: Path  # holds the stub libs

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(self.lib_dir), env.get("LD_LIBRARY_PATH", "")) if p
        )
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(self.python_dir), str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        return env


def cache_root() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    return Path(explicit) if explicit else REPO_ROOT / ".cache" / "trt-bindings"


def _wheel(major: int, wheels: Path) -> Path | None:
    project, version = BINDINGS[major]
    stem = project.replace("-", "_") + "-" + version + "-"
    found = sorted(wheels.glob(stem + "*.whl"))
    return found[0] if found else None


def download_wheels(majors: tuple[int, ...] = tuple(BINDINGS)) -> Path:
    """``pip download --no-deps`` of the pinned wheels into the cache (skips those present)."""
    wheels = cache_root() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wanted = [f"{BINDINGS[m][0]}=={BINDINGS[m][1]}" for m in majors if _wheel(m, wheels) is None]
    if not wanted:
        return wheels
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    proc = subprocess.run(
        [*cmd, "-d", str(wheels), *wanted], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        raise BindingsUnavailable(
            f"pip could not download {wanted} from PyPI (exit {proc.returncode}); the TensorRT "
            "API-conformance check needs them. Check network access to PyPI or pre-fill "
            f"{wheels} with scripts/fetch_trt_bindings.sh.\n{proc.stderr[-2000:]}"
        )
    return wheels


def _compile_stubs(lib_dir: Path, major: int) -> None:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise BindingsUnavailable("no C compiler (gcc/cc) to build the TensorRT stub libraries")
    lib_dir.mkdir(parents=True, exist_ok=True)
    src = lib_dir / "trt_stub.c"
    src.write_text(
        "/* Stand-ins for the TensorRT entry points: every factory returns NULL. */\n"
        + "".join(f"void* {sym}(void) {{ return 0; }}\n" for sym in STUB_SYMBOLS),
        encoding="utf-8",
    )
    for lib in STUB_LIBS:
        out = lib_dir / f"{lib}.so.{major}"
        proc = subprocess.run(
            [cc, "-shared", "-fPIC", "-o", str(out), str(src)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise BindingsUnavailable(f"compiling {out.name} failed: {proc.stderr[-2000:]}")


def prepare(major: int) -> BindingsEnv:
    """Fetch (if needed), unpack and stub one bindings version; idempotent and cached."""
    project, version = BINDINGS[major]
    root = cache_root() / version
    python_dir, lib_dir = root / "python", root / "stubs"
    marker = root / ".ready"
    if not marker.is_file():
        wheel = _wheel(major, download_wheels((major,)))
        if wheel is None:
            raise BindingsUnavailable(f"{project}=={version} wheel missing after download")
        shutil.rmtree(root, ignore_errors=True)
        tmp = root / "unpack"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
        if not (tmp / "tensorrt_bindings" / "tensorrt.so").is_file():
            raise BindingsUnavailable(f"{wheel.name} has no tensorrt_bindings/tensorrt.so")
        python_dir.mkdir(parents=True)
        (tmp / "tensorrt_bindings").rename(python_dir / "tensorrt")
        shutil.rmtree(tmp)
        _compile_stubs(lib_dir, major)
        marker.write_text(version, encoding="utf-8")
    return BindingsEnv(major, version, python_dir, lib_dir)


if __name__ == "__main__":
    for m in BINDINGS:
        env = prepare(m)
        sys.stdout.write(f"TensorRT {env.version}: {env.python_dir} (stubs in {env.lib_dir})\n")
