"""TensorRT-RTX's runtime cache on disk: the kernels it specialised for this GPU, kept so the
second start skips that work.

TensorRT-RTX compiles kernels for the actual GPU when an execution context is made ("typically
under 15 s"). The result is valid only for the same TensorRT-RTX version, GPU model, OS and CUDA
driver major, so the file lives in the cache under exactly those: ``<cache>/runtime/<TensorRT-RTX
version>-<GPU name>-drv<major>/<engine entry>.cache``. Reads and writes go through the cache's
descriptor-based primitive (``cache.root.CacheRoot`` / ``cache.safedir.SafeDir``: private
directories reached from the marked root with no link followed at any level, owner and mode
checked, atomic replace); a refused or unreadable file only means the kernels are specialised
again.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...cache.root import CacheRoot
from ...cache.safedir import SafeDir
from ...errors import CacheError
from ...log import get_logger

logger = get_logger("trt.runtime_cache")


def runtime_cache_dir(cache_root: Path, label: str, gpu_name: str, driver_major: int) -> Path:
    """The folder for one TensorRT-RTX version + GPU model + driver major (not created)."""
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{label}-{gpu_name}-drv{int(driver_major)}")
    return Path(cache_root) / "runtime" / tag


@dataclass
class RuntimeCacheFile:
    """One engine's runtime cache file, with what happened to it (for the timings report)."""

    path: Path
    loaded_bytes: int = 0
    saved_bytes: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def _folder(self, *, create: bool) -> SafeDir:
        """``<cache>/runtime/<tag>`` (``path`` is ``runtime_cache_dir(...) / name``), reached
        from the cache root through descriptors."""
        folder = Path(self.path).parent
        return CacheRoot(folder.parent.parent).open(folder.parent.name, folder.name, create=create)

    def load(self) -> bytes | None:
        """The saved cache, or None (absent, or refused as unsafe: then it is not used)."""
        started = time.perf_counter()
        try:
            with self._folder(create=False) as folder:
                data = folder.read_bytes(Path(self.path).name)
        except FileNotFoundError:
            return None
        except (OSError, CacheError) as exc:
            logger.warning("not using the TensorRT-RTX runtime cache %s: %s", self.path, exc)
            return None
        self.loaded_bytes = len(data)
        self.timings["runtime_cache_load_seconds"] = time.perf_counter() - started
        return data

    def save(self, data: bytes | None) -> bool:
        """Replace the file with ``data`` (atomic, private); False when it cannot be written."""
        if not data:
            return False
        started = time.perf_counter()
        try:
            with self._folder(create=True) as folder:
                folder.write_bytes(Path(self.path).name, bytes(data))
        except (OSError, CacheError) as exc:
            logger.warning("could not save the TensorRT-RTX runtime cache %s: %s", self.path, exc)
            return False
        self.saved_bytes = len(data)
        self.timings["runtime_cache_save_seconds"] = time.perf_counter() - started
        return True
