"""Runs at every interpreter start (via ``paddleocr_trt_startup.pth``); must cost ~nothing.

It only installs a meta-path finder that notices when ``paddleocr`` or PaddleX's Paddle engine
module finishes importing, and then applies the patches in :mod:`paddleocr_trt.activation`.
Nothing heavy is imported and nothing is patched until then. ``PADDLEOCR_TRT_DISABLE=1`` turns
all of it off.
"""

from __future__ import annotations

import os
import sys

#: module name -> patch target name understood by ``activation.patches.apply``
WATCHED = {
    "paddleocr": "paddleocr",
    "paddlex.inference.models.engines.paddle": "paddlex_engine",
    "paddlex.inference.models.engines.onnxruntime": "paddlex_onnxruntime_engine",
    "paddlex.inference.pipelines.ocr.pipeline": "paddlex_ocr_pipeline",
}
_TRUE = {"1", "true", "yes", "on"}


def disabled() -> bool:
    return os.environ.get("PADDLEOCR_TRT_DISABLE", "").strip().lower() in _TRUE


class _PostImportLoader:
    """Wraps a module's real loader; after the module has executed, patch it."""

    def __init__(self, loader: object, fullname: str) -> None:
        self._loader = loader
        self._fullname = fullname

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _on_imported(self._fullname)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _ImportWatcher:
    """A meta-path finder that only ever answers for the watched module names."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PostImportLoader(spec.loader, fullname)
        return spec


def _on_imported(fullname: str) -> None:
    try:
        from .activation.patches import apply

        apply(WATCHED[fullname])
    except Exception as exc:  # never break the user's import because of us
        import logging

        logging.getLogger("paddleocr_trt").warning(
            "paddleocr_trt could not activate (%s: %s); PaddleOCR runs unmodified",
            type(exc).__name__,
            exc,
        )


def install() -> bool:
    """Install the watcher once; patch modules that are already imported. False if disabled."""
    if disabled():
        return False
    if not any(isinstance(f, _ImportWatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, _ImportWatcher())
    for fullname in WATCHED:
        if fullname in sys.modules:
            _on_imported(fullname)
    return True


install()
