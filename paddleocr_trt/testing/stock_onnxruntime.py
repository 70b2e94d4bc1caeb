"""Model dirs for PaddleOCR's *own* ONNX Runtime engine (``PaddleOCR(engine="onnxruntime")``).

PaddleX 3.7's ``ONNXRuntimeRunner`` runs ``inference.onnx`` from each model dir (with the dir's
``inference.yml`` for pre/post-processing), default session options, no conversion of its own.
Here each dir gets the *plain* graph this package validated (the same fp32 ONNX that
:mod:`.stock_engine` runs), so a benchmark compares PaddleOCR's engine and ours over the same
network weights: the peer a user compares us with when no TensorRT is around (issue 22).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..model_types import ModelType, locate_model_files
from .models import OCRModelSet

ONNX_FILE = "inference.onnx"


def _onnx_model_dir(source: Path, model_type: ModelType, cache_dir: Path, out: Path) -> Path:
    from ..pipeline import PipelineOptions, shared_pipeline

    converter = shared_pipeline(str(cache_dir), PipelineOptions(precision="fp32"))
    artifact = converter.onnx(source, model_type)
    out.mkdir(parents=True, exist_ok=True)
    config = locate_model_files(source).config
    if config is None:
        raise ValueError(f"{source}: no inference.yml; PaddleX's engine needs one")
    shutil.copyfile(config, out / "inference.yml")
    target = out / ONNX_FILE
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        os.link(artifact.path, target)
    except OSError:  # another file system
        shutil.copyfile(artifact.path, target)
    return out


def stock_onnxruntime_kwargs(
    models: OCRModelSet,
    cache_dir: str | Path,
    out_dir: str | Path,
    *,
    textline_orientation: bool = False,
) -> dict[str, object]:
    """``PaddleOCR`` keyword arguments running PaddleOCR's own ONNX Runtime engine over the
    plain validated graphs of ``models`` (ONNX model dirs written under ``out_dir``)."""
    out = Path(out_dir)
    dirs = {
        mtype: _onnx_model_dir(models.dir_for(mtype), mtype, Path(cache_dir), out / mtype.value)
        for mtype in (ModelType.DETECTION, ModelType.RECOGNITION, ModelType.CLASSIFICATION)
    }
    kwargs = models.paddleocr_kwargs(textline_orientation=textline_orientation)
    kwargs["text_detection_model_dir"] = str(dirs[ModelType.DETECTION])
    kwargs["text_recognition_model_dir"] = str(dirs[ModelType.RECOGNITION])
    if textline_orientation:
        kwargs["textline_orientation_model_dir"] = str(dirs[ModelType.CLASSIFICATION])
    kwargs["engine"] = "onnxruntime"
    return kwargs
