"""Write a validated ONNX graph out as a PaddleX ONNX model dir, for deployment without Paddle.

``paddleocr-trt convert MODEL_DIR --to-model-dir OUT`` converts a Paddle model dir once (where
Paddle is installed), validates the ONNX against native Paddle, and writes ``OUT/inference.onnx``
+ ``OUT/inference.yml``: PaddleX's layout for ``engine="onnxruntime"``. On the deployment
machine neither PaddleOCR (``engine="onnxruntime"``) nor this package needs Paddle for it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import yaml

from .errors import OutputPathError
from .model_resolve import ResolvedModel, resolve_model
from .model_types import ModelSource


def check_model_dir_output(out: Path) -> Path:
    """Refuse, before any work, a target that exists and is not an empty directory."""
    out = Path(os.path.abspath(out.expanduser()))
    if os.path.lexists(out) and (not out.is_dir() or out.is_symlink() or any(out.iterdir())):
        raise OutputPathError(f"--to-model-dir {out} exists and is not an empty directory")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"--to-model-dir {out}: directory {parent} is not writable")
    return out


def write_onnx_model_dir(onnx_path: Path | bytes, model: ResolvedModel, out: Path) -> ResolvedModel:
    """``onnx_path`` (or the ONNX bytes, e.g. a cache artifact as the cache checked them) + the
    model's inference.yml (from memory) as the model dir ``out``, written beside it and renamed
    into place; returns ``out`` resolved (as an ONNX model)."""
    if not model.config:
        raise OutputPathError(
            f"{model.model_dir} has no inference.yml: PaddleX cannot use a model dir without one"
        )
    out = check_model_dir_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        if isinstance(onnx_path, bytes):
            (staging / "inference.onnx").write_bytes(onnx_path)
        else:
            shutil.copyfile(onnx_path, staging / "inference.onnx")
        with open(staging / "inference.yml", "w", encoding="utf-8") as f:
            yaml.safe_dump(dict(model.config), f, allow_unicode=True, sort_keys=False)
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the model from other users
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.replace(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputPathError(f"could not write {out}: {exc.strerror or exc}") from exc
    written = resolve_model(out, model.model_type, source=ModelSource.ONNX)
    if not written.is_onnx or written.model_name != model.model_name:
        raise OutputPathError(f"{out} does not read back as an ONNX model dir")
    return written
